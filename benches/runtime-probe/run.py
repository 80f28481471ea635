import subprocess, time, statistics, os
bins = ["std_threads", "tokio_ct", "tokio_rt"]
res = {b: [] for b in bins}
for _ in range(200):
    for b in bins:
        t = time.perf_counter()
        subprocess.run(["target/release/" + b], check=True)
        res[b].append(time.perf_counter() - t)
for b in bins:
    xs = sorted(res[b])
    print(f"{b}: median {statistics.median(xs)*1000:.2f} ms, p10 {xs[20]*1000:.2f}, p90 {xs[180]*1000:.2f}, size {os.path.getsize('target/release/'+b)//1024} KiB")
print("load", os.getloadavg())
