//! Source-range changes (`spec.loadBalancerSourceRanges`) without a reload.
//!
//! The renderer puts a frontend's allowed ranges on `acl` lines with fixed pattern-list ids
//! (see `render/acl.rs`). When a new config differs from the live one only there (and in
//! server lines), the runtime path of [`apply_config`](crate::deploy::apply_config) replaces
//! each changed list in the running HAProxy with HAProxy's versioned, atomic replacement:
//!
//! ```text
//! prepare acl #1000443000                  → New version created: 7
//! add acl @7 #1000443000 10.0.0.0/8        (one per range; the live list is untouched)
//! commit acl @7 #1000443000                (the new list replaces the old one at once)
//! ```
//!
//! so no connection ever meets an empty or half-written list. A long list spans several
//! lines (several ids), and a range can move from one line to the next when others are added
//! or removed: then every changed list first gets the union of its old and new ranges, and
//! only then its new ranges, so a range that stays allowed is never missing, even between two
//! commits. The new file is written, validated and swapped in as for server changes (a
//! reload sees the same lists), and every list is read back (`show acl #id`) and compared
//! with the file, so a list an interrupted update left wrong is found too.

use std::collections::{BTreeMap, BTreeSet};

use edgelb_core::IpNet;

use edgelb_core::DeployError;

pub(crate) use crate::acl_line::SourceAcls;
use crate::edge_host::EdgeHost;
use crate::socket_requests::{batches, split_answers};

/// Why the runtime API did not bring the running source ACL lists to a file.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// The request could not be sent or answered (the edge or its socket failed).
    #[error("`{command}`: {source}")]
    Request {
        /// The first command of the request.
        command: String,
        /// What failed.
        #[source]
        source: DeployError,
    },
    /// HAProxy answered fewer commands than were sent.
    #[error("haproxy answered {answered} of {sent} commands starting with `{command}`: {answer}")]
    ShortAnswer {
        /// The first command of the request.
        command: String,
        /// Answers read.
        answered: usize,
        /// Commands sent.
        sent: usize,
        /// The whole answer, quoted.
        answer: String,
    },
    /// A command was refused (or answered something unexpected).
    #[error("`{command}` answered {answer}")]
    Refused {
        /// The command.
        command: String,
        /// Its answer, quoted.
        answer: String,
    },
    /// `show acl #id` answered something that is not a list of ranges.
    #[error("reading `show acl #{id}`: {reason}")]
    ShowAcl {
        /// The pattern list's id.
        id: u32,
        /// What was wrong with the answer.
        reason: String,
    },
    /// After the commands, a running list still differs from the file's.
    #[error(
        "source ACL #{id} runs {running} ranges instead of the file's {wanted} ({missing} missing, {extra} extra)"
    )]
    Differs {
        /// The pattern list's id.
        id: u32,
        /// Ranges running.
        running: usize,
        /// Ranges the file has.
        wanted: usize,
        /// Ranges of the file that do not run.
        missing: usize,
        /// Ranges that run but are not in the file.
        extra: usize,
    },
}

/// One pattern list's full new contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclReplacement {
    /// The pattern list's id (`#id`).
    pub id: u32,
    /// Its ranges after the replacement.
    pub ranges: Vec<IpNet>,
}

/// The replacements that bring the running lists (`live`) to `new`, in order: the union
/// step first when more than one list changes (see the module docs), then the new contents.
/// Lists in `new` that `live` lacks (or the reverse) cannot be changed at runtime: the
/// skeleton comparison sends such changes to a reload before this runs.
pub(crate) fn plan(live: &SourceAcls, new: &SourceAcls) -> Vec<AclReplacement> {
    let changed: Vec<(u32, &Vec<IpNet>, &Vec<IpNet>)> = new
        .iter()
        .filter_map(|(id, ranges)| {
            let old = live.get(id)?;
            let same = old.iter().collect::<BTreeSet<_>>() == ranges.iter().collect();
            (!same).then_some((*id, old, ranges))
        })
        .collect();
    let mut steps = Vec::new();
    if changed.len() > 1 {
        for (id, old, ranges) in &changed {
            let union: BTreeSet<IpNet> = old.iter().chain(ranges.iter()).copied().collect();
            steps.push(AclReplacement {
                id: *id,
                ranges: union.into_iter().collect(),
            });
        }
    }
    steps.extend(changed.into_iter().map(|(id, _, ranges)| AclReplacement {
        id,
        ranges: ranges.clone(),
    }));
    steps
}

/// Sends `lines` as few requests as fit HAProxy's request buffer (`a; b; c`) and returns
/// each command's answer, in order.
async fn request(
    host: &dyn EdgeHost,
    socket: &str,
    lines: &[String],
) -> Result<Vec<String>, AclError> {
    let mut answers = Vec::with_capacity(lines.len());
    for range in batches(lines) {
        let batch = &lines[range];
        let text = host
            .socket_command(socket, &batch.join("; "))
            .await
            .map_err(|source| AclError::Request {
                command: first_words(&batch[0]),
                source,
            })?;
        let got = split_answers(&text);
        if got.len() < batch.len() {
            return Err(AclError::ShortAnswer {
                command: first_words(&batch[0]),
                answered: got.len(),
                sent: batch.len(),
                answer: edgelb_core::text::quoted(text.trim()),
            });
        }
        answers.extend(got.into_iter().take(batch.len()));
    }
    Ok(answers)
}

/// Sends commands that answer nothing when they take (`add acl`, `commit acl`).
async fn request_silent(
    host: &dyn EdgeHost,
    socket: &str,
    lines: &[String],
) -> Result<(), AclError> {
    let answers = request(host, socket, lines).await?;
    match lines
        .iter()
        .zip(&answers)
        .find(|(_, a)| !a.trim().is_empty())
    {
        None => Ok(()),
        Some((line, answer)) => Err(AclError::Refused {
            command: first_words(line),
            answer: edgelb_core::text::quoted(answer.trim()),
        }),
    }
}

/// The start of a long command line, for messages.
fn first_words(line: &str) -> String {
    let mut cut: String = line.chars().take(80).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    cut
}

/// Replaces the running lists of `phase` (each id at most once) with their ranges: a new
/// version of every list is prepared, filled and committed (each commit swaps one whole list
/// at once); returns how many commands that took. The commands go in as few requests as fit.
pub(crate) async fn apply_phase(
    host: &dyn EdgeHost,
    socket: &str,
    phase: &[AclReplacement],
) -> Result<usize, AclError> {
    let prepares: Vec<String> = phase
        .iter()
        .map(|s| format!("prepare acl #{}", s.id))
        .collect();
    let answers = request(host, socket, &prepares).await?;
    let mut adds = Vec::new();
    let mut commits = Vec::with_capacity(phase.len());
    for ((step, line), answer) in phase.iter().zip(&prepares).zip(&answers) {
        let version: u32 = answer
            .trim()
            .strip_prefix("New version created:")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| AclError::Refused {
                command: line.clone(),
                answer: edgelb_core::text::quoted(answer.trim()),
            })?;
        let id = step.id;
        adds.extend(
            step.ranges
                .iter()
                .map(|range| format!("add acl @{version} #{id} {range}")),
        );
        commits.push(format!("commit acl @{version} #{id}"));
    }
    request_silent(host, socket, &adds).await?;
    request_silent(host, socket, &commits).await?;
    Ok(prepares.len() + adds.len() + commits.len())
}

/// Splits a plan into phases: a phase ends where a list comes up again (the union step of
/// [`plan`], then its final step).
pub(crate) fn phases(steps: &[AclReplacement]) -> Vec<&[AclReplacement]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut ids = BTreeSet::new();
    for (i, step) in steps.iter().enumerate() {
        if !ids.insert(step.id) {
            out.push(&steps[start..i]);
            start = i;
            ids.clear();
            ids.insert(step.id);
        }
    }
    if start < steps.len() {
        out.push(&steps[start..]);
    }
    out
}

/// Brings the running source ACLs from `live` (what the live file says) to `new` (see
/// [`plan`]); returns how many commands that took. `Err` says what failed; lists committed
/// before it keep their new contents.
pub(crate) async fn push(
    host: &dyn EdgeHost,
    socket: &str,
    live: &SourceAcls,
    new: &SourceAcls,
) -> Result<usize, AclError> {
    let steps = plan(live, new);
    let mut sent = 0;
    for phase in phases(&steps) {
        sent += apply_phase(host, socket, phase).await?;
    }
    if !steps.is_empty() {
        tracing::debug!(
            node = host.node(),
            lists = steps.len(),
            commands = sent,
            "source ranges replaced through the runtime API"
        );
    }
    Ok(sent)
}

/// Reads back (`show acl #id`, one request) every source ACL list of a file (`file`) and
/// compares it with the file; `Err` names the first that differs. All lists, not only the
/// changed ones: a list left wrong by an earlier interrupted update is found too (and the
/// caller's reload repairs it).
pub(crate) async fn verify(
    host: &dyn EdgeHost,
    socket: &str,
    file: &SourceAcls,
) -> Result<(), AclError> {
    let running = read_running(host, socket, file.keys().copied()).await?;
    compare(file, &running)
}

/// The running contents of the lists `ids` (`show acl #id`, in as few requests as fit).
pub(crate) async fn read_running(
    host: &dyn EdgeHost,
    socket: &str,
    ids: impl Iterator<Item = u32>,
) -> Result<BTreeMap<u32, BTreeSet<IpNet>>, AclError> {
    let ids: Vec<u32> = ids.collect();
    let shows: Vec<String> = ids.iter().map(|id| format!("show acl #{id}")).collect();
    let answers = request(host, socket, &shows).await?;
    ids.into_iter()
        .zip(answers)
        .map(|(id, answer)| {
            parse_show_acl(&answer)
                .map(|ranges| (id, ranges))
                .map_err(|reason| AclError::ShowAcl { id, reason })
        })
        .collect()
}

/// Whether the running lists are what the file's say; `Err` names the first that is not.
pub(crate) fn compare(
    file: &SourceAcls,
    running: &BTreeMap<u32, BTreeSet<IpNet>>,
) -> Result<(), AclError> {
    for (id, want) in file {
        let want: BTreeSet<IpNet> = want.iter().copied().collect();
        let empty = BTreeSet::new();
        let runs = running.get(id).unwrap_or(&empty);
        if *runs != want {
            return Err(AclError::Differs {
                id: *id,
                running: runs.len(),
                wanted: want.len(),
                missing: want.difference(runs).count(),
                extra: runs.difference(&want).count(),
            });
        }
    }
    Ok(())
}

/// Parses `show acl #id`: one `0xADDRESS PATTERN` line per entry.
pub(crate) fn parse_show_acl(text: &str) -> Result<BTreeSet<IpNet>, String> {
    let mut ranges = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pattern = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [addr, pattern] if addr.starts_with("0x") => pattern,
            _ => {
                return Err(format!(
                    "unexpected line {}",
                    edgelb_core::text::quoted(line)
                ));
            }
        };
        let range = pattern
            .parse::<IpNet>()
            .or_else(|_| pattern.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| format!("unexpected pattern {}", edgelb_core::text::quoted(pattern)))?;
        ranges.insert(range);
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests;
