//! RELP's frames: [`parse`] reads one as its bytes arrive, [`command`] writes one;
//! [`answer`] reads the DATA of a `rsp`, [`offers`] those of `open` and its answer.
//! The wire format is in the parent module's docs.

/// The last transaction number; the one after it is 1.
pub const MAX_TXNR: u32 = 999_999_999;
/// The longest DATA a frame can announce (nine digits): a longer message is refused.
pub const MAX_DATALEN: usize = 999_999_999;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u32,
    pub command: String,
    pub data: Vec<u8>,
}

/// Bytes that are no RELP frame: the session cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a RELP frame: {0}")]
pub struct BadFrame(pub String);

fn bad(why: impl Into<String>) -> BadFrame {
    BadFrame(why.into())
}

/// The first frame of `bytes` and how many bytes it took; `None` while it is incomplete
/// (read more and ask again). DATA longer than `max_data` is refused before it arrives.
pub fn parse(bytes: &[u8], max_data: usize) -> Result<Option<(Frame, usize)>, BadFrame> {
    let mut at = 0;
    let Some(txnr) = number(bytes, &mut at, "TXNR")? else {
        return Ok(None);
    };
    if space(bytes, &mut at, "TXNR")?.is_none() {
        return Ok(None);
    }
    let start = at;
    while bytes.get(at).is_some_and(u8::is_ascii_alphabetic) {
        at += 1;
        if at - start > 32 {
            return Err(bad("a COMMAND longer than 32 letters"));
        }
    }
    if at == bytes.len() {
        return Ok(None);
    }
    if at == start {
        return Err(bad(format!("no COMMAND after TXNR {txnr}")));
    }
    let command = String::from_utf8_lossy(&bytes[start..at]).into_owned();
    if space(bytes, &mut at, "COMMAND")?.is_none() {
        return Ok(None);
    }
    let Some(len) = number(bytes, &mut at, "DATALEN")? else {
        return Ok(None);
    };
    let len = len as usize;
    if len > max_data {
        return Err(bad(format!(
            "{command} announces {len} bytes, more than the {max_data} taken"
        )));
    }
    let mut data = Vec::new();
    if len > 0 {
        if space(bytes, &mut at, "DATALEN")?.is_none() {
            return Ok(None);
        }
        let Some(d) = bytes.get(at..at + len) else {
            return Ok(None);
        };
        data = d.to_vec();
        at += len;
    }
    match bytes.get(at) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((
            Frame {
                txnr,
                command,
                data,
            },
            at + 1,
        ))),
        Some(&b) => Err(bad(format!(
            "{command} (TXNR {txnr}) ends in byte {b:#04x}, not LF"
        ))),
    }
}

/// One to nine digits at `at`; `None` if the input ends first.
fn number(bytes: &[u8], at: &mut usize, what: &str) -> Result<Option<u32>, BadFrame> {
    let mut n: u32 = 0;
    let mut digits = 0;
    loop {
        match bytes.get(*at) {
            None => return Ok(None),
            Some(b) if b.is_ascii_digit() => {
                digits += 1;
                if digits > 9 {
                    return Err(bad(format!("{what} has more than nine digits")));
                }
                n = n * 10 + u32::from(b - b'0');
                *at += 1;
            }
            Some(&b) if digits == 0 => {
                return Err(bad(format!("{what} expected, found byte {b:#04x}")))
            }
            Some(_) => return Ok(Some(n)),
        }
    }
}

/// The SP after `what`; `None` if the input ends first.
fn space(bytes: &[u8], at: &mut usize, what: &str) -> Result<Option<()>, BadFrame> {
    match bytes.get(*at) {
        None => Ok(None),
        Some(b' ') => {
            *at += 1;
            Ok(Some(()))
        }
        Some(&b) => Err(bad(format!("byte {b:#04x} after {what}, not SP"))),
    }
}

/// Appends the frame of a command.
pub fn command(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    out.extend_from_slice(format!("{txnr} {command} {}", data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// The transaction number after `txnr`.
pub fn next_txnr(txnr: u32) -> u32 {
    if txnr >= MAX_TXNR {
        1
    } else {
        txnr + 1
    }
}

/// What a `rsp` frame's DATA says: `CODE [SP TEXT] [LF DATA]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    /// 200 is OK; anything else an error (the specification names 500).
    pub code: u16,
    pub text: String,
    /// For `open`, the server's offers.
    pub data: &'a [u8],
}

pub fn answer(data: &[u8]) -> Result<Answer<'_>, BadFrame> {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let code = line
        .get(..3)
        .filter(|c| c.iter().all(u8::is_ascii_digit))
        .filter(|_| matches!(line.get(3), None | Some(b' ')))
        .ok_or_else(|| {
            bad(format!(
                "an answer without a status code: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            ))
        })?;
    Ok(Answer {
        code: code.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')),
        text: String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned(),
        data: rest,
    })
}

/// Offers, one a line: `NAME[=VALUE[,VALUE…]]`.
pub fn offers(data: &[u8]) -> Vec<(String, Vec<String>)> {
    String::from_utf8_lossy(data)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((name, values)) => (
                name.to_string(),
                values
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            None => (l.to_string(), Vec::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(txnr: u32, command: &str, data: &str) -> Frame {
        Frame {
            txnr,
            command: command.into(),
            data: data.as_bytes().to_vec(),
        }
    }

    fn one(bytes: &[u8]) -> Result<Option<(Frame, usize)>, BadFrame> {
        parse(bytes, 64 << 10)
    }

    #[test]
    fn a_frame_is_none_until_its_last_byte_arrived() {
        let wire = b"12 rsp 6 200 OK\n";
        for cut in 0..wire.len() {
            assert_eq!(one(&wire[..cut]), Ok(None), "{:?}", &wire[..cut]);
        }
        assert_eq!(
            one(wire),
            Ok(Some((frame(12, "rsp", "200 OK"), wire.len())))
        );
    }

    #[test]
    fn answers_split_across_reads_come_out_whole_and_in_order() {
        let wire = b"2 rsp 6 200 OK\n3 rsp 20 500 command disabled\n0 serverclose 0\n";
        // As the socket might hand them over: the second answer cut in its DATA.
        let (a, b) = wire.split_at(24);
        let mut inbox = a.to_vec();
        let mut got = Vec::new();
        for more in [&b""[..], b] {
            inbox.extend_from_slice(more);
            while let Some((f, used)) = one(&inbox).unwrap() {
                inbox.drain(..used);
                got.push(f);
            }
            if more.is_empty() {
                assert_eq!(got.len(), 1, "only the first is whole yet");
            }
        }
        assert!(inbox.is_empty());
        assert_eq!(
            got,
            [
                frame(2, "rsp", "200 OK"),
                frame(3, "rsp", "500 command disabled"),
                frame(0, "serverclose", ""),
            ]
        );
        let a = answer(&got[1].data).unwrap();
        assert_eq!(
            (a.code, a.text.as_str(), a.data),
            (500, "command disabled", &b""[..])
        );
    }

    #[test]
    fn bad_frames_are_refused_not_waited_for() {
        for wire in [
            &b"x rsp 6 200 OK\n"[..],
            b"1234567890 rsp 0\n", // ten digits of TXNR
            b"1  rsp 0\n",         // no COMMAND
            b"1 rsp2 0\n",         // not letters
            b"1 rsp 6 200 OKX",    // no LF after DATA
            b"1 rsp 0 \n",         // DATALEN 0 takes no SP
            b"1 rsp 1234567890 ",  // ten digits of DATALEN
            b"1 rsp 70000 ",       // more than taken from a receiver
            b"1 abcdefghijklmnopqrstuvwxyzabcdefg 0\n",
        ] {
            assert!(one(wire).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
        assert!(answer(b"OK").is_err());
        assert!(answer(b"2000").is_err());
    }

    #[test]
    fn commands_are_framed_and_numbers_wrap_after_999_999_999() {
        let mut out = Vec::new();
        command(&mut out, 1, "open", b"relp_version=0\ncommands=syslog");
        command(&mut out, 7, "close", b"");
        assert_eq!(
            out,
            b"1 open 30 relp_version=0\ncommands=syslog\n7 close 0\n".to_vec()
        );
        let (f, used) = one(&out).unwrap().unwrap();
        assert_eq!((f.txnr, f.command.as_str(), used), (1, "open", 41));
        assert_eq!(next_txnr(1), 2);
        assert_eq!(next_txnr(MAX_TXNR - 1), MAX_TXNR);
        assert_eq!(next_txnr(MAX_TXNR), 1);
        assert_eq!(
            offers(b"relp_version=0\nrelp_software=librelp,1.11.0,http://x\ncommands=syslog\n"),
            [
                ("relp_version".to_string(), vec!["0".to_string()]),
                (
                    "relp_software".to_string(),
                    vec!["librelp".into(), "1.11.0".into(), "http://x".into()]
                ),
                ("commands".to_string(), vec!["syslog".to_string()]),
            ]
        );
    }
}
