//! Both sides of the bus proxy's SASL handshake (`busproxy/auth.rs`): the
//! server side reads what the sandboxed app writes, the client side what
//! the bus answers. The first byte picks the side (bit 0), whether to ask
//! for descriptor passing (bit 1) and the size of the reads (bits 2-7); the
//! rest is what arrives on the socket.
#![no_main]

use appbox::busproxy::auth::{AuthError, ClientAuth, ServerAuth, Step, MAX_LINE_LEN};
use libfuzzer_sys::fuzz_target;

/// The uid the seeds were recorded as.
const UID: u32 = 0;
const GUID: [u8; 16] = *b"appbox-fuzz-guid";

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    output: Vec<u8>,
    consumed: usize,
    finished: bool,
    error: Option<AuthError>,
}

/// Feeds `input` in reads of `chunk` bytes, as the proxy does: until the
/// handshake finishes or fails.
fn run(
    mut feed: impl FnMut(&[u8]) -> Result<Step, AuthError>,
    input: &[u8],
    chunk: usize,
) -> Outcome {
    let mut outcome = Outcome {
        output: Vec::new(),
        consumed: 0,
        finished: false,
        error: None,
    };
    for piece in input.chunks(chunk) {
        match feed(piece) {
            Ok(step) => {
                assert!(step.consumed <= piece.len());
                assert!(step.finished || step.consumed == piece.len());
                outcome.output.extend_from_slice(&step.output);
                outcome.consumed += step.consumed;
                if step.finished {
                    outcome.finished = true;
                    return outcome;
                }
            }
            Err(error) => {
                outcome.error = Some(error);
                return outcome;
            }
        }
    }
    outcome
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let server = control & 1 == 0;
    let unix_fd = control & 2 != 0;
    let chunk = usize::from(control >> 2) + 1;
    let (whole, pieces) = if server {
        let mut a = ServerAuth::new(UID, GUID);
        let mut b = ServerAuth::new(UID, GUID);
        let whole = run(|i| a.feed(i), input, input.len().max(1));
        let pieces = run(|i| b.feed(i), input, chunk);
        assert_eq!(a.unix_fd_negotiated(), b.unix_fd_negotiated());
        if whole.finished {
            // Only the exact line BEGIN ends it (CVE-2018-6560), after OK.
            assert!(input[..whole.consumed].ends_with(b"\r\nBEGIN\r\n"));
            assert!(whole.output.windows(3).any(|w| w == b"OK "));
            assert!(a.is_finished());
            assert_eq!(a.feed(b"x"), Err(AuthError::AlreadyFinished));
        }
        (whole, pieces)
    } else {
        let mut a = ClientAuth::new(UID, unix_fd);
        let mut b = ClientAuth::new(UID, unix_fd);
        let _ = a.initial_output();
        let whole = run(|i| a.feed(i), input, input.len().max(1));
        let pieces = run(|i| b.feed(i), input, chunk);
        if whole.finished {
            let guid = a.server_guid().expect("finished after OK");
            assert_eq!(guid.len(), 32);
            assert!(whole.output.ends_with(b"BEGIN\r\n"));
        }
        (whole, pieces)
    };
    // How the bytes are cut into reads changes nothing. (After an error the
    // connection is closed, so what the failing read would have written
    // does not matter.)
    if whole.error.is_some() || pieces.error.is_some() {
        assert_eq!(whole.error, pieces.error);
    } else {
        assert_eq!(whole, pieces);
    }
    // Output stays bounded whatever the input: the failure limit, one
    // AGREE_UNIX_FD per OK and the line limit bound it.
    let lines = whole.output.windows(2).filter(|w| w == b"\r\n").count();
    assert!(lines <= 64, "{lines} lines of output");
    assert!(whole.output.len() <= 64 * MAX_LINE_LEN);
});
