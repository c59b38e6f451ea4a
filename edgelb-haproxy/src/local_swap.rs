//! [`EdgeHost::stage_and_swap`] on this machine, with the live file's stamp: the local host
//! knows its live file like the SSH host does ([`LiveCache`](crate::LiveCache)), so a deploy
//! neither reads the live file back nor takes it apart again.
//!
//! The stamp is checked after `haproxy -c` passed, right before the live file is kept and
//! the new one renamed over it: a hand edit made up to that moment swaps nothing, and the
//! deploy goes on the careful path, which reads the edited file and repairs it.

use std::os::unix::fs::MetadataExt;

use edgelb_core::DeployError;

use crate::edge_host::{EdgeHost, FileStamp, StageSwap, Staged};

/// The stamp of the file at `path` (size, inode, modification and change times to the
/// nanosecond); `None` when it cannot be read.
pub(crate) async fn file_stamp(path: &str) -> Option<FileStamp> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some(FileStamp(format!(
        "{} {} {}.{:09} {}.{:09}",
        meta.size(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )))
}

/// Writes the new file, validates it, checks the live file's stamp when asked, keeps the
/// live file and renames the new one over it (see [`EdgeHost::stage_and_swap`]).
pub(crate) async fn stage_and_swap(
    host: &dyn EdgeHost,
    request: &StageSwap<'_>,
) -> Result<Staged, DeployError> {
    host.write_file(request.new_path, request.contents).await?;
    let out = host.exec(request.validate).await?;
    if !out.success() {
        remove_new(host, request.new_path).await;
        return Ok(Staged::Rejected(out.message()));
    }
    if let Some(expect) = request.expect_stamp {
        if file_stamp(request.live_path).await.as_ref() != Some(expect) {
            remove_new(host, request.new_path).await;
            return Ok(Staged::LiveChanged);
        }
        host.copy(request.live_path, request.prev_path).await?;
    } else if let Some(live) = request.keep_live {
        host.write_file(request.prev_path, live).await?;
    }
    host.rename(request.new_path, request.live_path).await?;
    Ok(Staged::Swapped {
        stamp: file_stamp(request.live_path).await,
    })
}

/// Removes a new file that is not swapped in; a failure is only logged.
async fn remove_new(host: &dyn EdgeHost, path: &str) {
    if let Err(e) = host.remove_file(path).await {
        tracing::warn!(node = host.node(), error = %e, "could not remove the new config that was not swapped in");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalHost;

    fn request<'a>(
        paths: &'a [String; 3],
        validate: &'a [String],
        expect: Option<&'a FileStamp>,
    ) -> StageSwap<'a> {
        StageSwap {
            live_path: &paths[0],
            new_path: &paths[1],
            prev_path: &paths[2],
            contents: b"new\n",
            validate,
            keep_live: None,
            expect_stamp: expect,
        }
    }

    #[tokio::test]
    async fn swaps_only_while_the_live_file_keeps_its_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let paths = [
            format!("{d}/haproxy.cfg"),
            format!("{d}/haproxy.cfg.new"),
            format!("{d}/haproxy.cfg.prev"),
        ];
        std::fs::write(&paths[0], "old\n").unwrap();
        let host = LocalHost::new("local");
        let accept = ["true".to_owned()];
        let stamp = file_stamp(&paths[0]).await.unwrap();

        let staged = stage_and_swap(&host, &request(&paths, &accept, Some(&stamp)))
            .await
            .unwrap();
        let Staged::Swapped { stamp: Some(now) } = staged else {
            panic!("{staged:?}");
        };
        assert_eq!(std::fs::read_to_string(&paths[0]).unwrap(), "new\n");
        assert_eq!(std::fs::read_to_string(&paths[2]).unwrap(), "old\n");
        assert_eq!(file_stamp(&paths[0]).await, Some(now.clone()));

        // A hand edit since: nothing is swapped, the edit stays, the new file is gone.
        std::fs::write(&paths[0], "edited by hand\n").unwrap();
        let staged = stage_and_swap(&host, &request(&paths, &accept, Some(&now)))
            .await
            .unwrap();
        assert_eq!(staged, Staged::LiveChanged);
        assert_eq!(
            std::fs::read_to_string(&paths[0]).unwrap(),
            "edited by hand\n"
        );
        assert!(!std::path::Path::new(&paths[1]).exists());

        // A rejected file swaps nothing either.
        let reject = ["false".to_owned()];
        let staged = stage_and_swap(&host, &request(&paths, &reject, None))
            .await
            .unwrap();
        assert!(matches!(staged, Staged::Rejected(_)), "{staged:?}");
        assert_eq!(
            std::fs::read_to_string(&paths[0]).unwrap(),
            "edited by hand\n"
        );
    }
}
