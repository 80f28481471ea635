// What ccb does at start: bind two loopback listeners and start their acceptor threads, then a
// child; here the child is `true`, waited for.
fn main() {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ta = std::thread::spawn(move || { a.set_nonblocking(true).unwrap(); let _ = a.accept(); });
    let tb = std::thread::spawn(move || { b.set_nonblocking(true).unwrap(); let _ = b.accept(); });
    let st = std::process::Command::new("true").status().unwrap();
    let _ = (ta.join(), tb.join());
    std::process::exit(if st.success() { 0 } else { 1 });
}
