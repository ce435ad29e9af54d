//! The start of an intercepted TLS connection (`--tls`) on any bytes a client sends, in
//! pieces of any size: `tls::Handshake` must never panic, and whenever it decides the bytes
//! were not a ClientHello it must give back exactly the bytes it was fed, in order, so that
//! relaying them as they came loses nothing.
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use tcpspy::relay::Stream;
use tcpspy::tls::{Handshake, Plan, Step, plan::Flags};

/// A client socket holding what the fuzzer sent so far.
#[derive(Default)]
struct Mem {
    input: VecDeque<u8>,
    output: Vec<u8>,
    closed: bool,
}

impl Stream for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return match self.closed {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = buf.len().min(self.input.len());
        for (i, b) in self.input.drain(..n).enumerate() {
            buf[i] = b;
        }
        Ok(n)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn plan() -> &'static Mutex<Plan> {
    static PLAN: OnceLock<Mutex<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tcpspy-fuzz-ca-{}", std::process::id()));
        let flags = Flags {
            ca_dir: Some(dir),
            insecure: true,
            ..Flags::default()
        };
        Mutex::new(Plan::new(&flags).expect("a CA in the temporary directory"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut plan) = plan().lock() else {
        return;
    };
    let (cut, rest) = data
        .split_first()
        .map_or((1, data), |(c, r)| (*c as usize + 1, r));
    let mut pieces = rest.chunks(cut);
    let first = pieces.next().unwrap_or_default();
    let mut fed = first.to_vec();
    let mut h = Handshake::new(first.to_vec(), true);
    let (mut client, mut server) = (Mem::default(), Mem::default());
    let mut more = pieces.peekable();
    loop {
        match h.drive(
            &mut client,
            &mut server,
            &mut plan,
            "example.com",
            [127, 0, 0, 1].into(),
        ) {
            Step::Wait => {}
            Step::NotTls(bytes, _) => {
                assert_eq!(bytes, fed, "a hello that was not one comes back whole");
                return;
            }
            Step::Done(_) | Step::Failed(..) => return,
        }
        match more.next() {
            Some(p) => {
                client.input.extend(p);
                fed.extend_from_slice(p);
            }
            None if !client.closed => client.closed = true,
            None => return,
        }
    }
});
