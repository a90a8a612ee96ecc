//! One mail for a group of jobs (`n` pictures of one request). Each job's end is tallied
//! in the notification log by compare-and-set; once every job of the group has ended,
//! the group's mail is sent, once (the log guards it like any mail, under the group's id).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::Mailer;
use super::compose::Notice;
use super::shown::{cost_context, local_time, seconds, shorten};
use super::templates::Kind;
use crate::contract::groups::{Group, GroupNotify, GroupRef};
use crate::contract::jobs::JobStatus;
use crate::contract::values::JobId;
use crate::failure::Failure;

/// What a group job's end means for the mail.
pub(super) enum ForGroup {
    /// Mailed as a job asked for alone (`notify: each`, or a group nobody kept).
    Alone,
    /// No mail now: others of the group are still running, or the group wants none.
    Quiet,
    /// Every job has ended: the group's one mail.
    Mail(Notice),
}

impl Mailer {
    /// Tallies the end of job `member` of its group, and says what to mail.
    pub(super) async fn for_group(&self, member: &GroupRef) -> Result<ForGroup, Failure> {
        let Some(group) = self.jobs.group(&member.id).await? else { return Ok(ForGroup::Alone) };
        match group.notify {
            GroupNotify::Each => return Ok(ForGroup::Alone),
            GroupNotify::None => return Ok(ForGroup::Quiet),
            GroupNotify::Summary => {}
        }
        let size = group.members.len() as u32;
        let ended = self.tally(&group.id, member.index).await?;
        if member.index >= size || (0..size).any(|index| !ended.contains(&index)) {
            return Ok(ForGroup::Quiet);
        }
        // Each job's state is written just after its final event: wait for the last one.
        let mut statuses = Vec::with_capacity(group.members.len());
        for id in &group.members {
            match self.jobs.get(id).await? {
                Some(status) if status.status.is_final() => statuses.push(status),
                _ => {
                    return Err(Failure::transient(format!(
                        "job {id} of group {} has not recorded its end yet",
                        group.id
                    ))
                    .after(Some(Duration::from_secs(1))));
                }
            }
        }
        let mut notice = Notice::group(&group, &statuses, self.outgoing.composer.zone())?;
        if self.outgoing.composer.takes_request_recipients()
            && let Some(targets) = self.jobs.targets(&group.members[0]).await?
        {
            notice.notify_email = targets.notify_email;
        }
        Ok(ForGroup::Mail(notice))
    }

    /// Adds `index` to the group's ended jobs (compare-and-set: several mailers may add
    /// at once), and returns them all.
    async fn tally(&self, group: &str, index: u32) -> Result<BTreeSet<u32>, Failure> {
        let key = format!("{group}.tally");
        loop {
            let mut ended = match self.tallies.entry(&key).await? {
                Some((bytes, revision)) => {
                    let mut ended: BTreeSet<u32> = serde_json::from_slice(&bytes).unwrap_or_default();
                    if !ended.insert(index) || self.tallies.update(&key, encoded(&ended), revision).await? {
                        return Ok(ended);
                    }
                    continue;
                }
                None => BTreeSet::new(),
            };
            ended.insert(index);
            if self.tallies.create(&key, encoded(&ended)).await? {
                return Ok(ended);
            }
        }
    }
}

fn encoded(ended: &BTreeSet<u32>) -> Bytes {
    Bytes::from(serde_json::to_vec(ended).expect("numbers serialize"))
}

impl Notice {
    /// The mail for a group whose jobs (`statuses`, in the group's order) have all ended.
    pub(super) fn group(group: &Group, statuses: &[JobStatus], zone: &jiff::tz::TimeZone) -> Result<Self, Failure> {
        let id = JobId::parse(group.id.as_str()).map_err(|invalid| Failure::permanent(invalid.problem))?;
        let mut pictures = Vec::new();
        let mut failures = Vec::new();
        for (n, status) in statuses.iter().enumerate() {
            if let Some(done) = &status.result {
                pictures.push(json!({
                    "number": n + 1,
                    "url": done.url,
                    "model": done.model,
                    "width": done.width,
                    "height": done.height,
                    "preview_width": done.width.min(544),
                    "duration_seconds": seconds(done.duration_ms),
                    "cost": cost_context(&done.cost),
                }));
            } else if let Some(failed) = &status.error {
                failures.push(json!({"number": n + 1, "model": failed.model, "error": failed.error}));
            }
        }
        let finished = statuses.iter().map(|status| status.updated_at).max().unwrap_or(group.created_at);
        Ok(Self {
            kind: Kind::Group,
            job_id: id,
            context: json!({
                "id": group.id,
                "prompt": group.prompt,
                "short_prompt": shorten(&group.prompt, 30),
                "count": statuses.len(),
                "completed_count": pictures.len(),
                "failed_count": failures.len(),
                // A batch's mail links its pictures; a handful are shown too.
                "show_images": pictures.len() <= 12,
                "completed_at": local_time(finished, zone),
                "pictures": pictures,
                "failures": failures,
            }),
            notify_email: None,
            image: None,
            skip: Vec::new(),
        })
    }
}
