//! A recording read from any text, played from both sides with arbitrary bytes heard
//! (`tcpspy::replay::script::Player`), the mock's choice and check of a client's bytes, and
//! the compare with a mask: never a panic, and a player gives no more than the recording holds.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tcpspy::replay::compare::{self, Mask};
use tcpspy::replay::mock::{self, Check};
use tcpspy::replay::script::{Options, Out, Pace, Player};
use tcpspy::replay::source::hexdump;
use tcpspy::types::Side;

fuzz_target!(|input: (&str, Vec<u8>, Vec<u8>)| {
    let (text, heard, other) = input;
    let Ok(rec) = hexdump::read(text, "fuzz", None) else {
        return;
    };
    let now = Instant::now();
    for side in Side::BOTH {
        for pace in [Pace::Asap, Pace::Original] {
            let opts = Options {
                pace,
                turn_timeout: Some(Duration::from_millis(1)),
            };
            let mut p = Player::new(&rec, side, opts, now);
            let later = now + Duration::from_secs(3600 * 24 * 366);
            let mut given = 0usize;
            let mut buf = [0u8; 7];
            for (i, c) in heard.chunks(3).enumerate() {
                p.hear(c.len(), now);
                if i % 5 == 4 {
                    p.hear_end(now);
                }
                for _ in 0..4 {
                    match p.read(&mut buf, later) {
                        Out::Bytes(n) => given += n,
                        Out::Fin | Out::Reset | Out::Wait => {}
                    }
                }
                let _ = p.due();
                let _ = p.done_at();
            }
            assert!(given <= rec.stream(side).len());
        }
    }
    let recs = [rec.clone()];
    let _ = mock::choose(&recs, &heard, false);
    let _ = mock::choose(&recs, &heard, true);
    let mut check = Check::new(&rec);
    for c in heard.chunks(5) {
        if let Some(m) = check.feed(c) {
            let _ = m.text();
        }
    }
    let mask = Mask::new(&["[0-9]+".to_string()]).unwrap_or_default();
    let recorded = rec.stream(Side::Server);
    if let Some(d) = compare::compare(&mask, &recorded, &other) {
        let _ = compare::excerpt(&recorded, d.recorded_at);
        let _ = compare::excerpt(&other, d.received_at);
    }
});
