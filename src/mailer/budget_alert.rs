//! `budget.alert` → one plain mail to the operator (`[smtp] to`), in Chinese and English,
//! logged under the alert's id so that a redelivery never mails twice.

use time::OffsetDateTime;

use super::Mailer;
use super::sent::{DeliveryState, Notification};
use crate::contract::budget::{BudgetAlert, Period, Scope};
use crate::failure::Failure;

/// The kind under which the mail log keeps budget alerts.
const KIND: &str = "budget_alert";

impl Mailer {
    pub(super) async fn budget_alert(&self, alert: &BudgetAlert, attempt: u32) -> Result<(), Failure> {
        let settings = &self.outgoing.settings;
        if settings.to.is_empty() {
            tracing::warn!(budget = %alert.id, "no [smtp] to: the budget alert is not mailed");
            return Ok(());
        }
        if let Some(previous) = self.log.get(&alert.id, KIND).await?
            && previous.state != DeliveryState::Retrying
        {
            return Ok(());
        }
        let (subject, text) = words(alert);
        let message = self
            .outgoing
            .composer
            .to_operator(subject, text)
            .map_err(|e| Failure::permanent(format!("the alert could not be composed: {e}")))?;
        let sent = self.outgoing.send_message(message).await;
        let may_retry = !self.policy.is_last(attempt);
        let state = match &sent {
            Ok(()) => DeliveryState::Sent,
            Err(error) if error.is_transient() && may_retry => DeliveryState::Retrying,
            Err(_) => DeliveryState::Failed,
        };
        let now = OffsetDateTime::now_utc();
        let entry = Notification {
            job_id: alert.id.clone(),
            kind: KIND.into(),
            state,
            recipients: settings.to.clone(),
            attempts: attempt,
            last_error: sent.as_ref().err().map(|e| e.reason.clone()),
            sent_at: sent.is_ok().then_some(now),
            updated_at: now,
        };
        self.log.put(&entry).await?;
        match sent {
            Err(error) if state == DeliveryState::Retrying => Err(error),
            _ => Ok(()),
        }
    }
}

/// The subject and the text: which budget, how far spent, when it resets.
fn words(alert: &BudgetAlert) -> (String, String) {
    let (whose_zh, whose_en) = match (&alert.scope, &alert.key) {
        (Scope::Key, Some(key)) => (format!("密钥 {key} 的"), format!("key {key}'s")),
        _ => ("整个安装的".to_string(), "the installation's".to_string()),
    };
    let (period_zh, period_en) = match alert.period {
        Period::Day => ("日", "daily"),
        Period::Month => ("月", "monthly"),
    };
    let resets = alert.resets_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let subject = format!(
        "绘影 huiying：{whose_zh}{period_zh}预算已用 {}% / {whose_en} {period_en} budget at {}%",
        alert.percent, alert.percent
    );
    let text = format!(
        "{whose_zh}{period_zh}预算（{name}）已用 {spent:.4} 美元，上限 {limit:.2} 美元（{percent}%）。\n\
         达到上限后，新任务会被拒绝，直到 {resets} 重置。\n\n\
         {whose_en} {period_en} budget ({name}) has spent ${spent:.4} of ${limit:.2} ({percent}%).\n\
         At the limit new jobs are refused until it resets at {resets}.\n\n\
         Usage: GET /usage, or huiying usage\n",
        name = alert.period_name,
        spent = alert.spent_usd,
        limit = alert.limit_usd,
        percent = alert.percent,
    );
    (subject, text)
}
