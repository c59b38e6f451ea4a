//! Where HAProxy lives on an edge host and how it is reloaded.

use std::time::Duration;

use crate::error::{Error, Result};

/// Paths and commands of HAProxy on one edge host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyLayout {
    /// The live config file (default `/etc/haproxy/haproxy.cfg`). The new file is written
    /// beside it as `<path>.edgelb-new`; the previous one is kept as `<path>.edgelb-prev`.
    pub config_path: String,
    /// The haproxy binary (default `haproxy`, found on PATH).
    pub haproxy_bin: String,
    /// HAProxy's master CLI socket, the `-S` argument (default `/run/haproxy/master.sock`).
    /// Reloads are sent and confirmed through it.
    pub master_socket: String,
    /// Reload with this command (e.g. `systemctl reload haproxy`) instead of the master
    /// socket's `reload`. The reload is confirmed through the master socket either way.
    pub reload_command: Option<Vec<String>>,
    /// How long to wait for a reload to show up in `show proc`.
    pub reload_timeout: Duration,
}

impl Default for HaproxyLayout {
    fn default() -> Self {
        Self {
            config_path: "/etc/haproxy/haproxy.cfg".into(),
            haproxy_bin: "haproxy".into(),
            master_socket: "/run/haproxy/master.sock".into(),
            reload_command: None,
            reload_timeout: Duration::from_secs(10),
        }
    }
}

impl HaproxyLayout {
    /// `<config_path>.edgelb-new`.
    pub fn new_path(&self) -> String {
        format!("{}.edgelb-new", self.config_path)
    }

    /// `<config_path>.edgelb-prev`.
    pub fn prev_path(&self) -> String {
        format!("{}.edgelb-prev", self.config_path)
    }

    /// Checks every path and command word: plain absolute paths and words only, so nothing
    /// here can be read by a remote shell as anything but a literal.
    pub fn validate(&self) -> Result<()> {
        let plain = |c: char| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@' | ':' | '=')
        };
        let check = |what: &'static str, value: &str, absolute: bool| {
            if value.is_empty()
                || !value.chars().all(plain)
                || (absolute && !value.starts_with('/'))
            {
                Err(Error::InvalidInput {
                    what,
                    value: value.to_owned(),
                    reason: format!(
                        "use {}letters, digits and / . _ - + @ : = only",
                        if absolute { "an absolute path of " } else { "" }
                    ),
                })
            } else {
                Ok(())
            }
        };
        check("haproxy config path", &self.config_path, true)?;
        check("haproxy master socket", &self.master_socket, true)?;
        check("haproxy binary", &self.haproxy_bin, false)?;
        for word in self.reload_command.iter().flatten() {
            check("reload command word", word, false)?;
        }
        if self.reload_command.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::InvalidInput {
                what: "reload command",
                value: String::new(),
                reason: "give a command such as [systemctl, reload, haproxy], or leave it out to reload through the master socket".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_shell_metacharacters_and_relative_paths() {
        let ok = HaproxyLayout::default();
        assert!(ok.validate().is_ok());
        for bad in [
            "etc/haproxy.cfg",
            "/etc/h a.cfg",
            "/etc/$(x)",
            "/etc/h;rm",
            "/etc/h\n",
        ] {
            let layout = HaproxyLayout {
                config_path: bad.into(),
                ..ok.clone()
            };
            assert!(layout.validate().is_err(), "{bad}");
        }
        let layout = HaproxyLayout {
            reload_command: Some(vec![
                "systemctl".into(),
                "reload".into(),
                "haproxy;id".into(),
            ]),
            ..ok
        };
        assert!(layout.validate().is_err());
    }
}
