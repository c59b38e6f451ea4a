//! The `ssh` Ansible runs: a POSIX sh wrapper around OpenSSH's `ssh` for a process whose UID
//! has no passwd entry (OpenShift-style random UIDs, containers run as an arbitrary user).
//! OpenSSH refuses to start then ("No user exists for uid …"); the wrapper gives it an entry
//! through nss_wrapper (Debian: libnss-wrapper), with the deployer's work directory as home.
//! With an entry, it only runs `ssh`.

use std::path::Path;

use crate::paths::text;

/// Where nss_wrapper's library is looked for, in order.
const NSS_WRAPPER_LIBS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
    "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
    "/usr/lib64/libnss_wrapper.so",
    "/usr/lib/libnss_wrapper.so",
];

/// The wrapper script; `nss_dir` receives the generated passwd and group files, `home` is the
/// home directory they name. Both are plain absolute paths (no quoting needed).
pub(crate) fn ssh_wrapper(nss_dir: &Path, home: &Path) -> String {
    format!(
        r#"#!/bin/sh
# Written by edgelb-ansible: OpenSSH's ssh for a UID without a passwd entry (see ssh_wrapper.rs).
uid="$(id -u)"
gid="$(id -g)"
if ! getent passwd "$uid" >/dev/null 2>&1; then
  for lib in {libs}; do
    [ -r "$lib" ] || continue
    nss='{nss}'
    printf 'edgelb:x:%s:%s:edgelb:%s:/bin/sh\n' "$uid" "$gid" '{home}' >"$nss/passwd.$$"
    printf 'edgelb:x:%s:\n' "$gid" >"$nss/group.$$"
    mv -f "$nss/passwd.$$" "$nss/passwd"
    mv -f "$nss/group.$$" "$nss/group"
    LD_PRELOAD="$lib${{LD_PRELOAD:+ $LD_PRELOAD}}"
    NSS_WRAPPER_PASSWD="$nss/passwd"
    NSS_WRAPPER_GROUP="$nss/group"
    export LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
    break
  done
  if [ -z "${{NSS_WRAPPER_PASSWD:-}}" ]; then
    echo "edgelb: uid $uid has no passwd entry and ssh needs one: install libnss-wrapper (the edgelb-ansible image has it), or run as a user in /etc/passwd" >&2
  fi
fi
exec ssh "$@"
"#,
        libs = NSS_WRAPPER_LIBS.join(" "),
        nss = text(nss_dir),
        home = text(home),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_is_valid_sh_and_runs_ssh() {
        let script = ssh_wrapper(Path::new("/tmp/w/nss"), Path::new("/tmp/w/home"));
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.trim_end().ends_with("exec ssh \"$@\""));
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}
