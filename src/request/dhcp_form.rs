//! The external DHCP client forms of the classic address token
//! (`udhcpc`, `dhclient-f`, `dhcp:OPTS`, …): pure grammar, so the request
//! can be checked before anything runs; `dhcp::external` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Udhcpc,
    Dhclient,
    Dhcpcd,
    /// `dhcp:OPTS`: busybox udhcpc, daemonizing after the lease.
    BusyboxUdhcpc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub client: Client,
    /// The `-f` variants: leave the client running.
    pub foreground: bool,
    pub opts: Vec<String>,
}

/// Recognise a classic external-client method. `dhcp` and `dhcp:once` are
/// our own client and return `None`.
pub fn parse(method: &str) -> Option<Form> {
    let (name, opts) = match method.split_once(':') {
        Some((n, o)) => (n, o.split_whitespace().map(String::from).collect()),
        None => (method, Vec::new()),
    };
    let (client, foreground) = match name {
        "udhcpc" => (Client::Udhcpc, false),
        "udhcpc-f" => (Client::Udhcpc, true),
        "dhclient" => (Client::Dhclient, false),
        "dhclient-f" => (Client::Dhclient, true),
        "dhcpcd" => (Client::Dhcpcd, false),
        "dhcp" if !opts.is_empty() && method != "dhcp:once" => (Client::BusyboxUdhcpc, true),
        _ => return None,
    };
    Some(Form {
        client,
        foreground,
        opts,
    })
}
