//! A command line split into words as a POSIX shell would split it
//! (quotes and backslashes), for `cmd`, `entrypoint` and `exec` lines
//! given as one string. Nothing is expanded and no shell ever runs it:
//! the words go to the engine as an argv.

pub fn split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut word = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {
                if word {
                    out.push(std::mem::take(&mut cur));
                    word = false;
                }
            }
            '\'' => {
                word = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed ' in `{s}`")),
                    }
                }
            }
            '"' => {
                word = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err(format!("unclosed \" in `{s}`")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed \" in `{s}`")),
                    }
                }
            }
            '\\' => {
                word = true;
                match it.next() {
                    Some(x) => cur.push(x),
                    None => return Err(format!("a trailing \\ in `{s}`")),
                }
            }
            c => {
                word = true;
                cur.push(c);
            }
        }
    }
    if word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn words_split_as_a_shell_would_without_expanding() {
        assert_eq!(
            split("ip route add 10.0.0.0/8  via 1.2.3.4").expect("plain"),
            ["ip", "route", "add", "10.0.0.0/8", "via", "1.2.3.4"]
        );
        assert_eq!(
            split(r#"sh -c 'echo $HOME; ls' "a \"b\"" c\ d ''"#).expect("quotes"),
            ["sh", "-c", "echo $HOME; ls", "a \"b\"", "c d", ""]
        );
        assert!(split("echo 'open").is_err());
        assert!(split("echo \"open").is_err());
        assert!(split("").expect("empty").is_empty());
    }
}
