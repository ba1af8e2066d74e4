//! Strings from outside our trust boundary: names and aliases read from a
//! guest's namespace, container names and labels from the engine, records
//! a guest could have forged, DHCP replies.
//!
//! Two rules. Such a string never reaches a terminal raw: an escape
//! sequence in a link alias must not be able to clear the operator's
//! screen, retitle the window or hide a line of `ls` output (`display`).
//! And it never becomes part of a host file name unchecked: a `/` or `..`
//! would walk out of the directory we meant (`file_component`,
//! `check_component`).
use std::borrow::Cow;
use std::fmt::Write;

/// Characters a terminal (or a text renderer) acts on instead of showing.
fn is_hazard(c: char) -> bool {
    matches!(c,
        // C0 controls (ESC, BEL, CR, LF, BS, TAB…) and DEL.
        '\u{0}'..='\u{1f}' | '\u{7f}'
        // C1 controls: some terminals take U+009B as a one-byte CSI.
        | '\u{80}'..='\u{9f}'
        // Bidi embeddings/overrides and isolates ("Trojan Source"): they
        // reorder what follows, so a name could display as another name.
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Bidi marks: weaker, but they too move neighbouring text.
        | '\u{061c}' | '\u{200e}' | '\u{200f}'
        // Line and paragraph separators: a line break to some renderers,
        // which would split one `ls` row into two.
        | '\u{2028}' | '\u{2029}')
}

/// `s` as safe terminal text: every control character (C0, DEL, C1), bidi
/// control and Unicode line separator is replaced by a visible escape
/// (`\x1b`, `\u{202e}`); everything else, backslashes included, is left
/// as is. Borrowed (no allocation) when there is nothing to escape, which
/// is the common case.
///
/// The result is for people to read, not to parse back: a name that
/// really contains the four characters `\x1b` looks the same as one
/// containing ESC. Machine consumers should use `--json`.
pub fn display(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(is_hazard) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if !is_hazard(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// Bytes that a POSIX shell takes literally in an unquoted word.
fn shell_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'.' | b'_' | b'@' | b'%' | b'+' | b'=' | b':' | b',' | b'/' | b'-'
        )
}

/// `s` as one word of a command line a person will paste into a root
/// shell (doctor's `fix` lines): plain names stay as they are, anything
/// else is single-quoted, a `'` inside becoming `'\''`. Linux accepts
/// `$(reboot)`, `;`, backticks and spaces in an interface name, and a
/// guest chooses its names: quoted, they stay data. Control characters
/// are quoted too; rendering the line through `display` then makes them
/// visible without unquoting anything.
pub fn shell_word(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.bytes().all(shell_plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// Bytes that pass into a host file name unencoded.
fn plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// `s` made into text that can sit inside one host file name (e.g. the
/// `NAME` of `/var/run/udhcpc.NAME.pid`): bytes outside `[A-Za-z0-9_.-]`
/// become `%XX`. The mapping is one-to-one (`%` itself is encoded), so two
/// guests never share a pidfile, and the result contains no `/` and no
/// control character. Callers must still put a fixed prefix or suffix
/// around it: on its own, `.` or `..` would pass through unchanged.
/// Ordinary container names come out unchanged.
pub fn file_component(s: &str) -> Cow<'_, str> {
    if s.bytes().all(plain_byte) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if plain_byte(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// Refuse `s` as a single host file-name component unless it is one:
/// non-empty, not `.` or `..`, no `/`, no NUL or other control character,
/// at most 200 bytes (NAME_MAX is 255; callers add a prefix and suffix).
/// For names we expect to be well formed already (lock names, interface
/// names), where encoding would only hide a bug or a forgery.
///
/// This module sits below `error` (which renders through `display`), so a
/// refusal is a plain value the caller turns into its error.
pub fn check_component<'a>(s: &'a str, what: &str) -> Result<&'a str, Refused> {
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 200
        && !s.contains('/')
        && !s.contains(is_hazard);
    if ok {
        Ok(s)
    } else {
        Err(Refused {
            token: display(s).into_owned(),
            reason: format!(
                "not usable as a {what} file name (no '/', '.', '..' or control characters)"
            ),
        })
    }
}

/// A string refused by `check_component`: the token as it may be shown,
/// and why.
#[derive(Debug)]
pub struct Refused {
    pub token: String,
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.token, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for s in [
            "",
            "web-1",
            "eth0.10",
            "naïve café",
            "日本",
            r"back\slash",
            "a b",
        ] {
            assert!(matches!(display(s), Cow::Borrowed(x) if x == s), "{s:?}");
        }
    }

    #[test]
    fn c0_and_del_become_hex_escapes() {
        assert_eq!(display("a\x1b[2Jb"), r"a\x1b[2Jb");
        assert_eq!(
            display("\0\x07\x08\t\n\r\x7f"),
            r"\x00\x07\x08\x09\x0a\x0d\x7f"
        );
        // An OSC title-setting sequence, BEL-terminated.
        assert_eq!(display("\x1b]0;pwned\x07"), r"\x1b]0;pwned\x07");
    }

    #[test]
    fn c1_bidi_and_separators_become_unicode_escapes() {
        assert_eq!(display("x\u{9b}31m"), r"x\u{9b}31m");
        assert_eq!(display("\u{80}\u{85}\u{9f}"), r"\u{80}\u{85}\u{9f}");
        assert_eq!(display("abc\u{202e}gpj.exe"), r"abc\u{202e}gpj.exe");
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2067}', '\u{2068}',
            '\u{2069}',
        ] {
            let s = c.to_string();
            assert_eq!(display(&s), format!("\\u{{{:x}}}", c as u32));
        }
        assert_eq!(display("a\u{2028}b"), r"a\u{2028}b");
        // Neighbours of the ranges are ordinary text.
        let near = "\u{a0}\u{a1}\u{7e}\u{2027}\u{202f}\u{2065}\u{206a}\u{200d}";
        assert_eq!(display(near), near);
    }

    #[test]
    fn escaped_output_has_no_hazards_left() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let d = display(&all);
        assert!(!d.contains(is_hazard));
        assert!(!d.bytes().any(|b| b < 0x20 || b == 0x7f));
    }

    #[test]
    fn file_component_is_plain_and_one_to_one() {
        assert_eq!(file_component("web-1_a.b"), "web-1_a.b");
        assert_eq!(file_component("/proc/12/ns/net"), "%2Fproc%2F12%2Fns%2Fnet");
        assert_eq!(file_component("../../etc/shadow"), "..%2F..%2Fetc%2Fshadow");
        assert_eq!(file_component("a%2Fb"), "a%252Fb");
        assert_ne!(file_component("a/b"), file_component("a%2Fb"));
        assert_eq!(file_component("e\x1b[2J"), "e%1B%5B2J");
        assert_eq!(file_component("é"), "%C3%A9");
        for s in ["a/b", "..", "x\0y", "\x1b", "é/é"] {
            let c = file_component(s);
            assert!(!c.contains('/') && !c.bytes().any(|b| b < 0x20), "{c}");
        }
    }

    #[test]
    fn shell_words_are_plain_or_single_quoted() {
        for s in [
            "eth0",
            "vlan-eth0.10",
            "/var/run/netns/pwy1",
            "a@b:c,d=e+f%g",
        ] {
            assert!(matches!(shell_word(s), Cow::Borrowed(x) if x == s), "{s}");
        }
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("$(reboot)"), "'$(reboot)'");
        assert_eq!(shell_word(";id>/x"), "';id>/x'");
        assert_eq!(shell_word("`id`"), "'`id`'");
        assert_eq!(shell_word("a'b"), r"'a'\''b'");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("~x"), "'~x'");
        assert_eq!(shell_word("*"), "'*'");
    }

    #[test]
    fn components_are_checked() {
        assert!(check_component("vlan-eth0.10", "lock").is_ok());
        for bad in ["", ".", "..", "a/b", "/etc", "../x", "a\x1bb", "a\nb"] {
            assert!(check_component(bad, "lock").is_err(), "{bad:?}");
        }
        assert!(check_component(&"x".repeat(201), "lock").is_err());
        let e = check_component("a\x1b[2Jb", "lock").expect_err("bad");
        assert!(!e.to_string().contains('\x1b'), "{e}");
    }
}
