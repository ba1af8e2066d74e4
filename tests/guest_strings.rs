//! Names a guest chooses (its netns name, the records on its links) reach
//! the operator's terminal only with control characters escaped.
mod common;
use common::*;

/// Bytes a terminal acts on: C0 controls (but the newline that ends each
/// line), DEL, and the UTF-8 lead byte of C1 controls (U+0080–U+009F) and
/// of the bidi/separator block (U+2000–U+2FFF: E2 80/81 ..).
fn assert_no_raw_controls(what: &str, bytes: &[u8]) {
    let bad = bytes
        .iter()
        .position(|&b| (b < 0x20 && b != b'\n') || b == 0x7f);
    assert!(
        bad.is_none(),
        "{what}: raw control byte at {bad:?}: {:?}",
        String::from_utf8_lossy(bytes)
    );
    let text = String::from_utf8_lossy(bytes);
    let c1 = text.chars().find(
        |c| matches!(c, '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'),
    );
    assert!(c1.is_none(), "{what}: raw {c1:?} in {text:?}");
}

/// A namespace named by the test, whatever bytes the name holds.
fn netns_named(name: &str) -> Netns {
    ok("ip", &["netns", "add", name]);
    Netns {
        name: name.to_string(),
    }
}

#[test]
fn ls_detach_and_errors_escape_guest_chosen_names() {
    if !require_env() {
        return;
    }
    // Clear screen, set the window title, ring the bell.
    let evil = "\x1b[2J\x1b]0;pwned\x07";
    let ns = netns_named(&format!("{}{evil}", uniq("pwgesc")));
    let br = BridgeGuard::new("brpwg");
    let spec = ns.spec();
    let o = pipework_ok(&[&br.0, &spec, "10.237.0.2/24"]);
    assert_no_raw_controls("attach stderr", &o.stderr);

    // A record the guest forged on a link of its own: every field is
    // guest-chosen text, with escapes that JSON decoding turns into real
    // control characters.
    let forge = Netns::new("pwgfrg");
    let fl = "pwgf0";
    assert!(
        forge
            .exec(&[
                "ip", "link", "add", fl, "type", "veth", "peer", "name", "pwgf1"
            ])
            .status
            .success()
    );
    let alias = format!(
        r#"pipework {{"k":"\u001b[31mevil","h":"\u001b]0;t\u0007br","hi":"x\u202ey","g":"{}\u009b2J\u2066","if":"{fl}"}}"#,
        forge.name
    );
    assert!(
        forge
            .exec(&["ip", "link", "set", fl, "alias", &alias])
            .status
            .success()
    );

    let ls = pipework_ok(&["ls"]);
    assert_no_raw_controls("ls", &ls.stdout);
    assert_no_raw_controls("ls stderr", &ls.stderr);
    let text = stdout(&ls);
    // Both show up, escaped into visible text.
    assert!(
        text.contains(r"\x1b[2J\x1b]0;pwned\x07"),
        "netns guest not listed escaped:\n{text}"
    );
    // The forged record is not signed by this host: never listed, only
    // reported as ignored, with its link name escaped like everything else.
    assert!(!text.contains(fl), "forged record listed:\n{text}");
    let err = stderr(&ls);
    assert!(
        err.contains(&format!("ignored {fl} in ")),
        "forged record not reported as ignored:\n{err}"
    );

    // JSON keeps the real strings, escaped the JSON way.
    // (serde_json escapes C0 only, as JSON requires; C1 and bidi
    // characters stay raw UTF-8 there, which is valid JSON for programs.)
    let js = pipework_ok(&["ls", "--json"]);
    assert!(
        !js.stdout.iter().any(|&b| b < 0x20 && b != b'\n'),
        "raw C0 byte in ls --json"
    );
    let jtext = stdout(&js);
    assert!(jtext.contains(r"\u001b[2J\u001b]0;pwned\u0007"), "{jtext}");
    let v: serde_json::Value = serde_json::from_str(&jtext).expect("json");
    assert!(
        v.as_array()
            .is_some_and(|a| a.iter().any(|e| e["guest"] == ns.name.as_str())),
        "{jtext}"
    );

    // An error quoting a guest name.
    let missing = format!("netns:{}{evil}", uniq("pwgnone"));
    let o = pipework(&[&br.0, &missing, "10.237.0.3/24"]);
    assert!(!o.status.success());
    assert_no_raw_controls("error", &o.stderr);
    let err = stderr(&o);
    assert!(err.contains(r"\x1b[2J"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // detach names what it removed.
    let o = pipework_ok(&["detach", &spec]);
    assert_no_raw_controls("detach stderr", &o.stderr);
    assert!(stderr(&o).contains(r"\x1b[2J"), "{}", stderr(&o));
}
