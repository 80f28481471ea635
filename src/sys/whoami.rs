//! Who runs ccb and where: the login name and the host name recorded with each session (the
//! team ledger's `user` and `host`).

/// The login name: `$USER`, else `$LOGNAME`, else the password database's name for the uid,
/// else the uid as a number.
pub fn login_name() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() && !v.chars().any(char::is_control) {
                return v;
            }
        }
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// The host's name (`gethostname(2)`), or `localhost` when it cannot be read.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_name_is_the_kernels() {
        let want = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(super::host_name(), want.trim());
    }
}
