//! The bus proxy's message layer (`busproxy/message.rs`): framing, header
//! validation, the body reader, the rewrites the filter makes, and the
//! match-rule parser. Every byte the app writes after its handshake goes
//! through `message_length` and `parse_header` first.
#![no_main]

use appbox::busproxy::message::{
    access_denied, match_rule_argument, message_length, method_return, parse_header,
    parse_match_rule, replace_body, request_name_arguments, rule_requests_eavesdrop,
    set_header_field, string_argument, validate_signature, Arg, Header, HeaderField,
    MAX_MATCH_RULE_LENGTH,
};
use libfuzzer_sys::fuzz_target;

/// Reads the body by its signature, as far as the reader's types go.
fn read_body(data: &[u8], header: &Header) {
    let Ok(mut body) = header.body(data) else {
        return;
    };
    let signature = header.signature().as_bytes().to_vec();
    let mut at = 0;
    while at < signature.len() {
        let ok = match (signature[at], signature.get(at + 1)) {
            (b'a', Some(b's')) => {
                at += 1;
                body.read_string_array().is_ok()
            }
            (b'y', _) => body.read_byte().is_ok(),
            (b'b', _) => body.read_bool().is_ok(),
            (b'u', _) => body.read_u32().is_ok(),
            (b'i', _) => body.read_i32().is_ok(),
            (b's', _) => body.read_str().is_ok(),
            (b'o', _) => body.read_object_path().is_ok(),
            (b'g', _) => body.read_signature().is_ok(),
            _ => return,
        };
        // The header validated the body against its signature.
        assert!(ok, "{header:?}");
        at += 1;
    }
    assert_eq!(body.remaining(), 0);
    body.finish().expect("a body read to its end finishes");
}

fn message(data: &[u8]) {
    let length = message_length(data);
    let Ok(header) = parse_header(data) else {
        return;
    };
    assert_eq!(length, Ok(Some(data.len())));
    assert_eq!(header.total_len(), data.len());
    read_body(data, &header);
    let _ = string_argument(data, &header);
    let _ = request_name_arguments(data, &header);
    let _ = match_rule_argument(data, &header);

    // The replies the proxy makes up for any message it refuses.
    let denied = access_denied(&header, 7, "appbox: denied", header.endian)
        .expect("an error reply to a valid message");
    parse_header(&denied).expect("the error reply parses");
    let answer = method_return(&header, 8, &[Arg::Bool(true)], header.endian)
        .expect("a reply to a valid message");
    parse_header(&answer).expect("the reply parses");

    // The rewrites of the filter change the one field and nothing else.
    for (field, value) in [
        (HeaderField::Destination, "org.appbox.Portal.Desktop"),
        (HeaderField::Sender, ":1.42"),
    ] {
        if let Ok(rewritten) = set_header_field(data, &header, field, value) {
            let again = parse_header(&rewritten).expect("a rewritten message parses");
            let mut expected = header.clone();
            match field {
                HeaderField::Destination => expected.destination = Some(value.into()),
                _ => expected.sender = Some(value.into()),
            }
            expected.body_offset = again.body_offset;
            assert_eq!(again, expected);
            assert_eq!(&rewritten[again.body_offset..], &data[header.body_offset..]);
        }
    }
    if header.signature() == "s" {
        let rewritten = replace_body(data, &header, &[Arg::Str("type='signal'")])
            .expect("a body of the same signature replaces");
        let again = parse_header(&rewritten).expect("a message with a new body parses");
        assert_eq!(again.body_offset, header.body_offset);
    }
}

fn match_rule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let eavesdrop = rule_requests_eavesdrop(text);
    let Ok(rule) = parse_match_rule(text) else {
        assert!(eavesdrop, "an unreadable rule counts as eavesdropping");
        return;
    };
    assert!(!rule.eavesdrop || eavesdrop);
    // The filter forwards renamed rules as `to_rule_string` writes them.
    let printed = rule.to_rule_string();
    if printed.len() <= MAX_MATCH_RULE_LENGTH {
        assert_eq!(parse_match_rule(&printed).as_ref(), Ok(&rule), "{printed}");
        assert_eq!(
            rule_requests_eavesdrop(&printed),
            rule.eavesdrop,
            "{printed}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    message(data);
    match_rule(data);
    let _ = validate_signature(data);
});
