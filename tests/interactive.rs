mod support;
use std::time::Duration;
use support::*;

#[test]
fn explore() {
    let api = MockApi::start(scripts::always_text("PONG_answer_42"));
    let home = ClaudeHome::new();
    let mut cmd = ccb_command(&home, &api.base_url(), &claude_bin());
    let mut t = Pty::spawn(&mut cmd, 30, 100);
    let before = t.termios();
    std::thread::sleep(Duration::from_secs(4));
    std::fs::write("/tmp/explore/1.raw", t.raw_output()).unwrap();
    t.send(b"hello");
    std::thread::sleep(Duration::from_secs(1));
    t.send(b"\r");
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write("/tmp/explore/2.raw", t.raw_output()).unwrap();
    t.send(b"/exit");
    std::thread::sleep(Duration::from_secs(1));
    t.send(b"\r");
    let st = t.wait(Duration::from_secs(10));
    std::fs::write("/tmp/explore/3.raw", t.raw_output()).unwrap();
    eprintln!("status {st:?} same termios {}", t.termios() == before);
    for r in api.requests() { eprintln!("{} {} {:?} {:?}", r.method, r.path, r.kind(), r.model()); }
}
