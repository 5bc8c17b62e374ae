//! Filtering of Xauthority files: the sandbox gets only the cookie for the one
//! display it may use, never the cookies of other displays or hosts.

const FAMILY_LOCAL: u16 = 256;
const FAMILY_WILD: u16 = 0xffff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XauthEntry {
    pub family: u16,
    pub address: Vec<u8>,
    pub number: Vec<u8>,
    pub name: Vec<u8>,
    pub data: Vec<u8>,
}

fn take<'a>(input: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if input.len() < len {
        return None;
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Some(head)
}

fn take_u16(input: &mut &[u8]) -> Option<u16> {
    take(input, 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

fn take_field(input: &mut &[u8]) -> Option<Vec<u8>> {
    let len = take_u16(input)? as usize;
    take(input, len).map(<[u8]>::to_vec)
}

/// Parses every complete entry; a truncated tail is ignored, as libXau does.
pub fn parse(mut input: &[u8]) -> Vec<XauthEntry> {
    let mut entries = Vec::new();
    while !input.is_empty() {
        let entry = (|| {
            Some(XauthEntry {
                family: take_u16(&mut input)?,
                address: take_field(&mut input)?,
                number: take_field(&mut input)?,
                name: take_field(&mut input)?,
                data: take_field(&mut input)?,
            })
        })();
        match entry {
            Some(entry) => entries.push(entry),
            None => break,
        }
    }
    entries
}

/// Keeps the cookies for local display `display` on `hostname`, rewritten as
/// wildcard entries so they work whatever the sandbox's hostname is.
pub fn filter_for_display(input: &[u8], display: &str, hostname: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in parse(input) {
        let local = entry.family == FAMILY_WILD
            || (entry.family == FAMILY_LOCAL && entry.address == hostname.as_bytes());
        if !local || entry.number != display.as_bytes() {
            continue;
        }
        out.extend_from_slice(&FAMILY_WILD.to_be_bytes());
        for field in [&b""[..], &entry.number, &entry.name, &entry.data] {
            let Ok(len) = u16::try_from(field.len()) else {
                continue;
            };
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(family: u16, address: &str, number: &str, data: &[u8]) -> Vec<u8> {
        let mut out = family.to_be_bytes().to_vec();
        for field in [
            address.as_bytes(),
            number.as_bytes(),
            b"MIT-MAGIC-COOKIE-1",
            data,
        ] {
            out.extend_from_slice(&(field.len() as u16).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    #[test]
    fn keeps_only_the_local_cookie_for_the_display() {
        let mut file = entry(FAMILY_LOCAL, "box", "0", b"local0");
        file.extend(entry(FAMILY_LOCAL, "box", "1", b"local1"));
        file.extend(entry(FAMILY_LOCAL, "other", "0", b"other0"));
        file.extend(entry(0, "\x7f\0\0\x01", "0", b"tcp0"));
        file.extend(&[0, 1, 0]); // truncated tail
        let filtered = parse(&filter_for_display(&file, "0", "box"));
        assert_eq!(filtered.len(), 1);
        assert_eq!(filtered[0].family, FAMILY_WILD);
        assert_eq!(filtered[0].data, b"local0");
    }
}
