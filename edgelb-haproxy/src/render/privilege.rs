//! Least privilege on the edge: who HAProxy's workers run as, where they are jailed, where
//! they log, and which directories sockets may be created in.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who HAProxy's workers run as once the master has bound every socket (`user`, `group`,
/// `chroot` in `global`). The defaults are those of Debian's and Ubuntu's `haproxy` package,
/// which creates the user, the group and the empty directory. `run_as: null` in the config
/// leaves the workers as the master's user (root when started as root), with no chroot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunAs {
    /// The workers' user. Default `haproxy`.
    pub user: String,
    /// The workers' group. Default `haproxy`.
    pub group: String,
    /// The directory the workers are jailed in (it should be empty and not writable by
    /// them). `null`: no chroot. Default `/var/lib/haproxy`.
    pub chroot: Option<String>,
}

impl Default for RunAs {
    fn default() -> Self {
        Self {
            user: "haproxy".to_owned(),
            group: "haproxy".to_owned(),
            chroot: Some("/var/lib/haproxy".to_owned()),
        }
    }
}

/// Where HAProxy sends its logs (`log TARGET FACILITY` in `global`; `log global` and
/// `option tcplog` in `defaults`). `log: null` in the config renders no logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogTarget {
    /// A syslog socket path (resolved inside the chroot: Debian's rsyslog provides
    /// `/var/lib/haproxy/dev/log` for that) or `IP:PORT` of a syslog server over UDP.
    /// Default `/dev/log`.
    pub target: String,
    /// The syslog facility. Default `local0`.
    pub facility: String,
}

impl Default for LogTarget {
    fn default() -> Self {
        Self {
            target: "/dev/log".to_owned(),
            facility: "local0".to_owned(),
        }
    }
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// The directories UNIX sockets may be created in by default: HAProxy's run directory.
pub fn default_socket_dirs() -> Vec<String> {
    vec!["/run/haproxy".to_owned()]
}

fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        what,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// An absolute path of letters, digits and `/ . _ -`, without `..`, of at most `max` bytes.
pub(crate) fn is_plain_absolute_path(path: &str, max: usize) -> bool {
    path.starts_with('/')
        && path.len() <= max
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
        && !path.split('/').any(|part| part == "..")
}

impl RunAs {
    pub(crate) fn validate(&self) -> Result<()> {
        for (what, name) in [("run_as.user", &self.user), ("run_as.group", &self.group)] {
            let ok = name.len() <= 32
                && name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                return Err(invalid(
                    what,
                    name,
                    "use a system account name (letters, digits, _ - ., starting with a letter, at most 32 characters), e.g. haproxy",
                ));
            }
        }
        if let Some(dir) = &self.chroot
            && (!is_plain_absolute_path(dir, 255) || dir == "/")
        {
            return Err(invalid(
                "run_as.chroot",
                dir,
                "use an absolute directory other than / made of letters, digits and / . _ - (e.g. /var/lib/haproxy), or null for no chroot",
            ));
        }
        Ok(())
    }
}

impl LogTarget {
    pub(crate) fn validate(&self) -> Result<()> {
        let target_ok = is_plain_absolute_path(&self.target, 107)
            || self.target.parse::<std::net::SocketAddr>().is_ok();
        if !target_ok {
            return Err(invalid(
                "log.target",
                &self.target,
                "use a syslog socket path such as /dev/log or IP:PORT of a syslog server, e.g. 192.0.2.5:514",
            ));
        }
        if !FACILITIES.contains(&self.facility.as_str()) {
            return Err(invalid(
                "log.facility",
                &self.facility,
                format!("use one of {}", FACILITIES.join(", ")),
            ));
        }
        Ok(())
    }
}

/// Checks the allowed socket directories themselves.
pub(crate) fn validate_socket_dirs(dirs: &[String]) -> Result<()> {
    for dir in dirs {
        if !is_plain_absolute_path(dir, 100) || dir == "/" {
            return Err(invalid(
                "socket_dirs entry",
                dir,
                "use an absolute directory other than / made of letters, digits and / . _ - (e.g. /run/haproxy)",
            ));
        }
    }
    Ok(())
}

/// Checks that a UNIX socket path lies inside one of `dirs`: HAProxy (as root) replaces
/// whatever file a socket path names, so a bind on `/etc/passwd` would destroy it.
pub(crate) fn check_socket_path(what: &'static str, path: &str, dirs: &[String]) -> Result<()> {
    if !is_plain_absolute_path(path, 107) {
        return Err(invalid(
            what,
            path,
            "use an absolute path of at most 107 characters made of letters, digits and / . _ - (e.g. /run/haproxy/admin.sock)",
        ));
    }
    let inside = dirs
        .iter()
        .any(|dir| Path::new(path).starts_with(dir) && Path::new(path) != Path::new(dir));
    if inside {
        Ok(())
    } else {
        Err(invalid(
            what,
            path,
            format!(
                "sockets may only be created inside haproxy.socket_dirs ({}); put it there or add its directory to socket_dirs",
                if dirs.is_empty() {
                    "none listed".to_owned()
                } else {
                    dirs.join(", ")
                }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_must_stay_in_the_allowed_directories() {
        let dirs = default_socket_dirs();
        check_socket_path("stats_socket", "/run/haproxy/admin.sock", &dirs).unwrap();
        check_socket_path("stats_socket", "/run/haproxy/sub/x.sock", &dirs).unwrap();
        for bad in [
            "/etc/passwd",
            "/run/haproxy",
            "/run/haproxy-evil/x.sock",
            "/run/haproxy/../../etc/passwd",
            "/run/haproxy/a b",
        ] {
            let err = check_socket_path("stats_socket", bad, &dirs)
                .unwrap_err()
                .to_string();
            assert!(err.contains("stats_socket"), "{bad}: {err}");
        }
        let err = check_socket_path("stats_socket", "/run/haproxy/x", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("none listed"), "{err}");
    }

    #[test]
    fn run_as_and_log_reject_what_haproxy_could_misread() {
        RunAs::default().validate().unwrap();
        LogTarget::default().validate().unwrap();
        for change in [
            |r: &mut RunAs| r.user = "root\n    chroot /".into(),
            |r: &mut RunAs| r.group = String::new(),
            |r: &mut RunAs| r.chroot = Some("/".into()),
            |r: &mut RunAs| r.chroot = Some("var/lib".into()),
        ] {
            let mut run_as = RunAs::default();
            change(&mut run_as);
            assert!(run_as.validate().is_err(), "{run_as:?}");
        }
        let ok = LogTarget {
            target: "192.0.2.5:514".into(),
            facility: "local7".into(),
        };
        ok.validate().unwrap();
        for (target, facility) in [("/dev/log x", "local0"), ("/dev/log", "local9")] {
            let log = LogTarget {
                target: target.into(),
                facility: facility.into(),
            };
            assert!(log.validate().is_err(), "{log:?}");
        }
    }
}
