//! The sliver of the GVariant serialization format that OSTree signatures
//! need: a dictionary `a{sv}` whose values are byte-array lists (`aay`) or
//! anything else, carried through untouched.
//!
//! Everything is little-endian and in normal form, as ostree writes it.
//! Decoding takes hostile input (detached metadata comes from remotes), so it
//! never panics, never recurses on the data and allocates at most a constant
//! factor of the input size.

use std::fmt;

/// A value in the dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `aay`: a list of byte strings, e.g. ed25519 signatures.
    ByteArrays(Vec<Vec<u8>>),
    /// Any other type: its type string and its serialized bytes (as they
    /// appear inside a `v`, i.e. starting 8-aligned), kept byte for byte.
    /// The type string is checked; the bytes are not checked against it.
    Raw { type_string: String, data: Vec<u8> },
}

/// Why bytes are not an `a{sv}` we can read, or a dictionary can't be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GVariantError(String);

impl GVariantError {
    fn new(message: impl Into<String>) -> Self {
        GVariantError(message.into())
    }
}

impl fmt::Display for GVariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad GVariant: {}", self.0)
    }
}

impl std::error::Error for GVariantError {}

/// GLib refuses type strings nested deeper than this; so do we.
const MAX_TYPE_DEPTH: usize = 128;

/// Serializes `entries` as an `a{sv}`, in the given order.
///
/// Fails when a key contains a NUL byte or a raw value's type string is not a
/// single definite type, since either would produce data nobody can read back.
pub fn encode_vardict(entries: &[(String, Value)]) -> Result<Vec<u8>, GVariantError> {
    let mut body = Vec::new();
    let mut ends = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        pad_to(&mut body, 8);
        encode_entry(&mut body, key, value)?;
        ends.push(body.len());
    }
    append_offsets(&mut body, &ends);
    Ok(body)
}

/// Parses an `a{sv}`, keeping the order (and any duplicates) of its entries.
pub fn decode_vardict(bytes: &[u8]) -> Result<Vec<(String, Value)>, GVariantError> {
    let elements = split_variable_array(bytes, 8, "a{sv}")?;
    let mut entries = Vec::with_capacity(elements.len());
    for (index, element) in elements.into_iter().enumerate() {
        let entry = decode_entry(element)
            .map_err(|e| GVariantError::new(format!("entry {index}: {}", e.0)))?;
        entries.push(entry);
    }
    Ok(entries)
}

fn encode_entry(out: &mut Vec<u8>, key: &str, value: &Value) -> Result<(), GVariantError> {
    if key.as_bytes().contains(&0) {
        return Err(GVariantError::new(format!(
            "dictionary key {key:?} contains a NUL byte"
        )));
    }
    // The entry starts 8-aligned in the array, so offsets relative to `start`
    // have the same alignment as absolute ones.
    let start = out.len();
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    let key_end = out.len() - start;
    pad_to_from(out, start, 8);
    match value {
        Value::ByteArrays(arrays) => {
            let ends: Vec<usize> = arrays
                .iter()
                .scan(0usize, |end, a| {
                    *end += a.len();
                    Some(*end)
                })
                .collect();
            for array in arrays {
                out.extend_from_slice(array);
            }
            // The aay starts at the variant's start; its offsets are relative
            // to it, and its framing size depends only on its own length.
            let mut offsets = Vec::new();
            let body_len = ends.last().copied().unwrap_or(0);
            write_offsets(&mut offsets, body_len, &ends);
            out.extend_from_slice(&offsets);
            out.push(0);
            out.extend_from_slice(b"aay");
        }
        Value::Raw { type_string, data } => {
            check_definite_type(type_string)?;
            out.extend_from_slice(data);
            out.push(0);
            out.extend_from_slice(type_string.as_bytes());
        }
    }
    // A struct's framing offsets cover every variable-sized member but the
    // last: here only the key's end.
    let body_len = out.len() - start;
    let mut offsets = Vec::new();
    write_offsets(&mut offsets, body_len, &[key_end]);
    out.extend_from_slice(&offsets);
    Ok(())
}

fn decode_entry(bytes: &[u8]) -> Result<(String, Value), GVariantError> {
    let size = bytes.len();
    let offset_size = offset_size_for(size);
    if offset_size == 0 {
        return Err(GVariantError::new("empty dictionary entry"));
    }
    let members_end = size - offset_size;
    let key_end = read_offset(bytes, members_end, offset_size)?;
    if key_end > members_end {
        return Err(GVariantError::new(format!(
            "key ends at {key_end}, past the members' end {members_end}"
        )));
    }
    let key = decode_string(&bytes[..key_end])?;
    let value_start = align_up(key_end, 8);
    if value_start > members_end {
        return Err(GVariantError::new(format!(
            "value starts at {value_start}, past the members' end {members_end}"
        )));
    }
    check_zero_padding(&bytes[key_end..value_start])?;
    let value = decode_variant(&bytes[value_start..members_end])
        .map_err(|e| GVariantError::new(format!("key {key:?}: {}", e.0)))?;
    Ok((key, value))
}

fn decode_string(bytes: &[u8]) -> Result<String, GVariantError> {
    let Some((&0, text)) = bytes.split_last() else {
        return Err(GVariantError::new("string is not NUL-terminated"));
    };
    if text.contains(&0) {
        return Err(GVariantError::new("string contains a NUL byte"));
    }
    String::from_utf8(text.to_vec()).map_err(|_| GVariantError::new("string is not UTF-8"))
}

fn decode_variant(bytes: &[u8]) -> Result<Value, GVariantError> {
    // The type string can't contain NUL, so the last NUL separates it.
    let Some(nul) = bytes.iter().rposition(|&b| b == 0) else {
        return Err(GVariantError::new("variant has no type string separator"));
    };
    let (data, type_bytes) = (&bytes[..nul], &bytes[nul + 1..]);
    let type_string = std::str::from_utf8(type_bytes)
        .map_err(|_| GVariantError::new("variant type string is not UTF-8"))?;
    check_definite_type(type_string)?;
    if type_string == "aay" {
        let arrays = split_variable_array(data, 1, "aay")?
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        Ok(Value::ByteArrays(arrays))
    } else {
        Ok(Value::Raw {
            type_string: type_string.to_string(),
            data: data.to_vec(),
        })
    }
}

/// Splits an array of variable-sized elements into the elements' bytes.
fn split_variable_array<'a>(
    bytes: &'a [u8],
    alignment: usize,
    what: &str,
) -> Result<Vec<&'a [u8]>, GVariantError> {
    let size = bytes.len();
    if size == 0 {
        return Ok(Vec::new());
    }
    let offset_size = offset_size_for(size);
    let last_end = read_offset(bytes, size - offset_size, offset_size)?;
    if last_end > size - offset_size {
        return Err(GVariantError::new(format!(
            "{what}: last element ends at {last_end}, past the framing offsets"
        )));
    }
    let offsets_len = size - last_end;
    if !offsets_len.is_multiple_of(offset_size) {
        return Err(GVariantError::new(format!(
            "{what}: {offsets_len} bytes of framing offsets is not a multiple of {offset_size}"
        )));
    }
    // Bounded by the input size: at least one byte per offset.
    let count = offsets_len / offset_size;
    let mut elements = Vec::with_capacity(count);
    let mut previous_end = 0usize;
    for index in 0..count {
        let end = read_offset(bytes, last_end + index * offset_size, offset_size)?;
        let start = if index == 0 {
            0
        } else {
            align_up(previous_end, alignment)
        };
        if start > end || end > last_end {
            return Err(GVariantError::new(format!(
                "{what}: element {index} spans {start}..{end}, outside 0..{last_end}"
            )));
        }
        check_zero_padding(&bytes[previous_end..start])?;
        elements.push(&bytes[start..end]);
        previous_end = end;
    }
    Ok(elements)
}

/// The framing offset width GVariant uses for a container of `size` bytes.
fn offset_size_for(size: usize) -> usize {
    let size = size as u64;
    if size == 0 {
        0
    } else if size <= u64::from(u8::MAX) {
        1
    } else if size <= u64::from(u16::MAX) {
        2
    } else if size <= u64::from(u32::MAX) {
        4
    } else {
        8
    }
}

fn read_offset(bytes: &[u8], at: usize, width: usize) -> Result<usize, GVariantError> {
    let field = at
        .checked_add(width)
        .and_then(|end| bytes.get(at..end))
        .ok_or_else(|| GVariantError::new(format!("framing offset at {at} is out of bounds")))?;
    let mut le = [0u8; 8];
    le[..field.len()].copy_from_slice(field);
    usize::try_from(u64::from_le_bytes(le))
        .map_err(|_| GVariantError::new(format!("framing offset at {at} is too large")))
}

/// Appends framing offsets for a container whose content is `body_len`
/// bytes, choosing the smallest width that can address the whole container.
fn write_offsets(out: &mut Vec<u8>, body_len: usize, ends: &[usize]) {
    if ends.is_empty() {
        return;
    }
    let width = [1usize, 2, 4, 8]
        .into_iter()
        .find(|&w| offset_size_for(body_len + w * ends.len()) <= w)
        .unwrap_or(8);
    for &end in ends {
        out.extend_from_slice(&(end as u64).to_le_bytes()[..width]);
    }
}

fn append_offsets(body: &mut Vec<u8>, ends: &[usize]) {
    let mut offsets = Vec::new();
    write_offsets(&mut offsets, body.len(), ends);
    body.extend_from_slice(&offsets);
}

fn align_up(n: usize, alignment: usize) -> usize {
    // Saturating: an overflow can only come from a bogus offset, which the
    // caller's bounds check then rejects.
    n.checked_add(alignment - 1)
        .map_or(usize::MAX, |n| n / alignment * alignment)
}

fn pad_to(out: &mut Vec<u8>, alignment: usize) {
    pad_to_from(out, 0, alignment);
}

fn pad_to_from(out: &mut Vec<u8>, start: usize, alignment: usize) {
    while !(out.len() - start).is_multiple_of(alignment) {
        out.push(0);
    }
}

fn check_zero_padding(padding: &[u8]) -> Result<(), GVariantError> {
    if padding.iter().any(|&b| b != 0) {
        return Err(GVariantError::new("non-zero padding (not in normal form)"));
    }
    Ok(())
}

/// Checks that `type_string` is exactly one definite GVariant type.
fn check_definite_type(type_string: &str) -> Result<(), GVariantError> {
    let bytes = type_string.as_bytes();
    match parse_type(bytes, 0, 0) {
        Ok(end) if end == bytes.len() => Ok(()),
        Ok(_) => Err(GVariantError::new(format!(
            "type string {type_string:?} is more than one type"
        ))),
        Err(()) => Err(GVariantError::new(format!(
            "type string {type_string:?} is not a valid definite type"
        ))),
    }
}

/// Parses one complete type at `at`, returning where it ends. Recursion is
/// bounded by MAX_TYPE_DEPTH, and the type string by the input's length.
fn parse_type(bytes: &[u8], at: usize, depth: usize) -> Result<usize, ()> {
    if depth > MAX_TYPE_DEPTH {
        return Err(());
    }
    match bytes.get(at) {
        Some(b'b' | b'y' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'h' | b'd' | b's' | b'o')
        | Some(b'g' | b'v') => Ok(at + 1),
        Some(b'a' | b'm') => parse_type(bytes, at + 1, depth + 1),
        Some(b'(') => {
            let mut at = at + 1;
            loop {
                match bytes.get(at) {
                    Some(b')') => return Ok(at + 1),
                    Some(_) => at = parse_type(bytes, at, depth + 1)?,
                    None => return Err(()),
                }
            }
        }
        Some(b'{') => {
            let key = bytes.get(at + 1).copied().ok_or(())?;
            if !b"bynqiuxthdsog".contains(&key) {
                return Err(());
            }
            let at = parse_type(bytes, at + 2, depth + 1)?;
            match bytes.get(at) {
                Some(b'}') => Ok(at + 1),
                _ => Err(()),
            }
        }
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(type_string: &str, data: &[u8]) -> Value {
        Value::Raw {
            type_string: type_string.to_string(),
            data: data.to_vec(),
        }
    }

    fn round_trip(entries: Vec<(String, Value)>) -> Vec<u8> {
        let bytes = encode_vardict(&entries).unwrap();
        assert_eq!(decode_vardict(&bytes).unwrap(), entries);
        bytes
    }

    #[test]
    fn empty_dict_is_empty() {
        assert_eq!(round_trip(Vec::new()), Vec::<u8>::new());
    }

    #[test]
    fn known_encoding_of_one_string() {
        // {'foo': <'bar'>} as GLib serializes it (checked with
        // g_variant_get_data): key, padding, variant, struct offset, array offset.
        let bytes = round_trip(vec![("foo".into(), raw("s", b"bar\0"))]);
        assert_eq!(
            bytes,
            b"foo\0\0\0\0\0bar\0\0s\x04\x0f".to_vec(),
            "{bytes:?}"
        );
    }

    #[test]
    fn known_encoding_of_signatures() {
        let sigs = vec![vec![1u8, 2], vec![3u8]];
        let bytes = round_trip(vec![("k".into(), Value::ByteArrays(sigs))]);
        // "k\0" + 6 pad, aay = 01 02 03 | 02 03, NUL "aay", struct offset 2,
        // array offset = entry length.
        let mut want = b"k\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[1, 2, 3, 2, 3, 0, b'a', b'a', b'y', 2]);
        want.push(want.len() as u8);
        assert_eq!(bytes, want);
    }

    #[test]
    fn round_trips_mixed_entries_in_order() {
        round_trip(vec![
            ("zeta".into(), raw("s", b"last\0")),
            (
                "ostree.gpgsigs".into(),
                Value::ByteArrays(vec![vec![7; 300]]),
            ),
            ("alpha".into(), raw("u", &[1, 0, 0, 0])),
            ("empty".into(), Value::ByteArrays(Vec::new())),
            (
                "blanks".into(),
                Value::ByteArrays(vec![Vec::new(), Vec::new()]),
            ),
            ("unit".into(), raw("()", &[0])),
            ("dup".into(), raw("b", &[1])),
            ("dup".into(), raw("b", &[0])),
        ]);
    }

    #[test]
    fn offset_widths_cross_boundaries() {
        // Up to 3 signatures fit 1-byte offsets; 4 need 2 bytes; ~1100 need 4.
        for count in [0usize, 1, 3, 4, 5, 200, 1100] {
            let sigs: Vec<Vec<u8>> = (0..count).map(|i| vec![i as u8; 64]).collect();
            let entries = vec![
                ("a".to_string(), raw("s", b"x\0")),
                ("ostree.sign.ed25519".to_string(), Value::ByteArrays(sigs)),
            ];
            let bytes = round_trip(entries.clone());
            assert_eq!(bytes, glib_vardict(&entries), "{count} signatures");
        }
        // Every container size around 255/256 bytes, for each kind of container.
        for len in 220..280 {
            for entries in [
                vec![("k".to_string(), Value::ByteArrays(vec![vec![9; len]]))],
                vec![(
                    "k".to_string(),
                    Value::ByteArrays(vec![vec![9; len / 2]; 2]),
                )],
                vec![("k".to_string(), raw("ay", &vec![9; len]))],
                vec![
                    ("k".to_string(), raw("ay", &vec![9; len / 2])),
                    ("l".to_string(), raw("ay", &vec![9; len / 3])),
                ],
            ] {
                let bytes = round_trip(entries.clone());
                assert_eq!(bytes, glib_vardict(&entries), "len {len}");
            }
        }
    }

    /// The same dictionary serialized by GLib itself (linked through
    /// ostree-ext, for tests only), to pin down framing and padding.
    fn glib_vardict(entries: &[(String, Value)]) -> Vec<u8> {
        use ostree_ext::glib::{variant::DictEntry, ToVariant, Variant, VariantTy};
        let items = entries.iter().map(|(key, value)| {
            let inner = match value {
                Value::ByteArrays(arrays) => arrays.to_variant(),
                Value::Raw { type_string, data } => {
                    Variant::from_data_with_type(data, VariantTy::new(type_string).unwrap())
                }
            };
            DictEntry::new(key.clone(), inner).to_variant()
        });
        let dict = Variant::array_from_iter_with_type(VariantTy::new("{sv}").unwrap(), items);
        dict.data().to_vec()
    }

    #[test]
    fn decodes_what_glib_writes() {
        let entries = vec![
            ("ostree.ref-binding".to_string(), raw("as", b"test\0\x05")),
            ("n".to_string(), raw("t", &42u64.to_le_bytes())),
            (
                "sig".to_string(),
                Value::ByteArrays(vec![vec![1; 64], vec![2; 64]]),
            ),
        ];
        assert_eq!(decode_vardict(&glib_vardict(&entries)).unwrap(), entries);
    }

    #[test]
    fn encode_refuses_what_cannot_be_read_back() {
        assert!(encode_vardict(&[("a\0b".into(), raw("s", b"\0"))]).is_err());
        assert!(encode_vardict(&[("k".into(), raw("", b""))]).is_err());
        assert!(encode_vardict(&[("k".into(), raw("ss", b""))]).is_err());
        assert!(encode_vardict(&[("k".into(), raw("a{vs}", b""))]).is_err());
    }

    #[test]
    fn type_strings() {
        for good in [
            "s",
            "aay",
            "a{sv}",
            "(sa{sv}ay)",
            "mmu",
            "()",
            "a(ii)",
            "{sv}",
        ] {
            check_definite_type(good).unwrap();
        }
        for bad in [
            "", "a", "(", "(s", "{s}", "{vs}", "z", "?", "r", "*", "ss", "a{sv",
        ] {
            assert!(check_definite_type(bad).is_err(), "{bad}");
        }
        let deep = "a".repeat(10_000) + "y";
        assert!(check_definite_type(&deep).is_err());
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let bytes = encode_vardict(&[
            ("foo".into(), raw("s", b"bar\0")),
            ("sig".into(), Value::ByteArrays(vec![vec![0xaa; 64]; 5])),
        ])
        .unwrap();
        for len in 1..bytes.len() {
            assert!(decode_vardict(&bytes[..len]).is_err(), "prefix {len}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"\xff",
            b"\x00",
            b"\x01\x01",
            b"foo\0\0\0\0\0bar\0\0s\x04\x0e", // array end off by one
            b"foo\0\0\0\0\0bar\0\0s\x0e\x0f", // key end past members
            b"foo\0\0\0\0\x01bar\0\0s\x04\x0f", // non-zero padding
            b"foo\0\0\0\0\0bar\0\0?\x04\x0f", // indefinite type
            b"fo\xff\0\0\0\0\0bar\0\0s\x04\x0f", // key not UTF-8
            b"foo\0\0\0\0\0barxxsx\x04\x0f",  // variant without NUL
        ];
        for case in cases {
            assert!(decode_vardict(case).is_err(), "{case:?}");
        }
        // A sweep of single-byte corruptions and pseudo-random buffers.
        let good = encode_vardict(&[
            ("foo".into(), raw("s", b"bar\0")),
            ("sig".into(), Value::ByteArrays(vec![vec![0x5a; 64]; 5])),
        ])
        .unwrap();
        for i in 0..good.len() {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = decode_vardict(&bad);
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..600 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode_vardict(&buf);
        }
    }

    #[test]
    fn many_empty_elements_stay_bounded() {
        // The cheapest element costs one offset byte: 250 of them, no more.
        let entries = vec![("k".to_string(), Value::ByteArrays(vec![Vec::new(); 250]))];
        let bytes = encode_vardict(&entries).unwrap();
        assert_eq!(decode_vardict(&bytes).unwrap(), entries);
    }
}
