//! Turning an event into a message: who it goes to, what the templates see, and the
//! MIME structure (text + HTML, optionally the picture inline).

use lettre::Message;
use lettre::message::Body;
use lettre::message::header::{ContentTransferEncoding, ContentType, MIME_VERSION_1_0};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::shown::{cost_context, human_size, local_time, seconds, shorten};
use super::templates::{Kind, Templates};
use super::unsubscribe::{ListUnsubscribePost, Unsubscribe};
use crate::config::{AllowedRecipients, Language, PLACEHOLDER_MODEL, SmtpConfig};
use crate::contract::cost::{Cost, CostSource};
use crate::contract::events::Cancellation;
use crate::contract::events::{
    EVENT_VERSION, ImageCompleted, ImageFailed, InputPicture, JobFacts, JobKind, Labels, Stage,
};
use crate::contract::jobs::CancelRequest;
use crate::contract::values::{JobId, ModelName, Prompt};
use crate::links::PictureLinks;

/// Content-ID of the inline picture.
const IMAGE_CID: &str = "image@huiying";

/// One notification, ready to be composed.
#[derive(Debug, Clone)]
pub struct Notice {
    pub(super) kind: Kind,
    pub job_id: JobId,
    /// What the templates see.
    pub context: Value,
    /// The request's own recipient, if it named one.
    pub notify_email: Option<String>,
    /// The stored picture, for `attach_image`.
    pub image: Option<ImageRef>,
    /// Recipients not to mail (on the suppression list), lowercase.
    pub skip: Vec<String>,
}

/// Where the stored picture is, to attach it.
#[derive(Debug, Clone)]
pub struct ImageRef {
    pub filename: String,
    pub url: String,
    pub content_type: &'static str,
}

/// A picture to put in the mail.
pub struct InlineImage {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

impl Notice {
    /// The success mail of `event`, its times in `zone` (the readers').
    pub fn completed(event: &ImageCompleted, zone: &jiff::tz::TimeZone) -> Self {
        let content_type = match event.format.as_str() {
            "png" => "image/png",
            "webp" => "image/webp",
            _ => "image/jpeg",
        };
        Self {
            kind: Kind::Completed,
            job_id: event.id.clone(),
            context: json!({
                "id": event.id,
                "prompt": event.prompt,
                "short_prompt": shorten(&event.prompt, 30),
                "english_prompt": event.english_prompt,
                "show_english_prompt": event.english_prompt != event.prompt.as_str(),
                "model": event.model,
                "url": event.url,
                "image_src": event.url,
                "width": event.width,
                "height": event.height,
                "preview_width": event.width.min(544),
                "format": event.format.to_uppercase(),
                "file_size": event.file_size,
                "file_size_human": human_size(event.file_size),
                "duration_seconds": seconds(event.duration_ms),
                "completed_at": local_time(event.completed_at, zone),
                // An edit's pictures, shown small beside the result.
                "edit_type": (!event.kind.is_generate()).then(|| event.kind.name()),
                "inputs": event.inputs.iter().map(|input| json!({"url": input.url, "source": input.source})).collect::<Vec<_>>(),
                // What it cost, when known (an unknown cost is left out, never shown as 0).
                "cost": cost_context(&event.cost),
            }),
            notify_email: event.notify_email.clone(),
            image: Some(ImageRef { filename: event.filename.clone(), url: event.url.clone(), content_type }),
            skip: Vec::new(),
        }
    }

    /// A generation, an edit and a failure, as the templates see real ones: every
    /// template is rendered with them at start, so that one failing on real data stops
    /// the mailer there rather than failing each mail.
    fn samples() -> [Notice; 4] {
        let now = time::OffsetDateTime::now_utc();
        let generation = sample_completed(now);
        let id = generation.id.clone();
        let input = InputPicture {
            object: "input/sample/0".into(),
            content_type: "image/png".into(),
            width: 64,
            height: 64,
            source: "upload:sample".into(),
            url: "http://localhost:8000/inputs/sample/0".into(),
            mask: false,
        };
        let edit = ImageCompleted { kind: JobKind::Compose, inputs: vec![input.clone(), input], ..generation.clone() };
        let facts = JobFacts {
            owner: None,
            group: None,
            id: &id,
            prompt: "一只在月球上的猫",
            model: "huiying/placeholder",
            notify_email: None,
            callback: &Default::default(),
            kind: JobKind::Generate,
        };
        let failure = ImageFailed::new(facts, Stage::Generate, "the model answered 503".into(), true, 3);
        let asked = CancelRequest { requested_at: now, notify: true, by: Some("key #1".into()) };
        let cancelled = ImageFailed::cancelled(facts, Cancellation::asked(&asked), 1);
        let utc = &jiff::tz::TimeZone::UTC;
        [
            Notice::completed(&generation, utc),
            Notice::completed(&edit, utc),
            Notice::failed(&failure, utc),
            Notice::failed(&cancelled, utc),
        ]
    }

    /// A group of two, one drawn and one failed, as the group template sees real ones.
    fn sample_group() -> Notice {
        let now = time::OffsetDateTime::now_utc();
        let drawn = sample_completed(now);
        let group = crate::contract::groups::Group {
            id: "sample-group".into(),
            members: vec![drawn.id.to_string(), "sample-2".into()],
            prompt: drawn.prompt.to_string(),
            notify: Default::default(),
            owner: None,
            created_at: now,
            cut_short: None,
            picked: None,
        };
        let done = crate::contract::jobs::JobStatus::from(&drawn);
        let mut failed = done.clone();
        failed.result = None;
        let facts = JobFacts {
            id: &drawn.id,
            prompt: &drawn.prompt,
            model: &drawn.model,
            notify_email: None,
            callback: &drawn.callback,
            kind: drawn.kind,
            owner: None,
            group: None,
        };
        failed.error = Some(ImageFailed::new(facts, Stage::Generate, "the model answered 503".into(), true, 3));
        Notice::group(&group, &[done, failed], &jiff::tz::TimeZone::UTC).expect("a valid sample")
    }

    /// The failure (or cancellation) mail of `event`, its times in `zone`.
    pub fn failed(event: &ImageFailed, zone: &jiff::tz::TimeZone) -> Self {
        Self {
            kind: Kind::Failed,
            job_id: event.id.clone(),
            context: json!({
                "id": event.id,
                "prompt": event.prompt,
                "short_prompt": shorten(&event.prompt, 30),
                "model": event.model,
                "stage": event.stage,
                "error": event.error,
                "attempts": event.attempts,
                "failed_at": local_time(event.failed_at, zone),
                // A cancelled job is its own outcome: by whom (`request` or `deadline`),
                // which key asked, and when.
                "cancelled": event.cancelled.as_ref().map(|cancelled| json!({
                    "by": cancelled.by,
                    "key": cancelled.key,
                    "requested_at": cancelled.requested_at.map(|at| local_time(at, zone)),
                })),
            }),
            notify_email: event.notify_email.clone(),
            image: None,
            skip: Vec::new(),
        }
    }
}

/// Templates, sender and recipients: everything needed to write a message.
pub struct Composer {
    templates: Templates,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    /// Whom a request may name instead of `to`.
    recipients: AllowedRecipients,
    /// The readers' time zone (`[smtp] timezone`).
    zone: jiff::tz::TimeZone,
    /// The one-click unsubscribe link every notification carries, once the link keys are known.
    unsubscribe: Option<Unsubscribe>,
    /// Signs picture links when pictures are private.
    picture_links: Option<PictureLinks>,
}

impl Composer {
    /// Checks addresses and templates, so that a mistake stops the mailer at start,
    /// not at the first mail.
    pub fn from_config(smtp: &SmtpConfig) -> anyhow::Result<Self> {
        let templates = Templates::load(&smtp.templates_dir, smtp.language)?;
        for sample in Notice::samples().into_iter().chain([Notice::sample_group()]) {
            templates
                .render(sample.kind, &sample.context)
                .map_err(|e| anyhow::anyhow!("bad configuration: [smtp] templates_dir: {e}"))?;
        }
        let default_name = if smtp.language == Language::En { "huiying" } else { "绘影" };
        let from = match smtp.from.trim() {
            "" => format!("{default_name} <huiying@localhost>"),
            from => from.to_string(),
        };
        let mut from: Mailbox =
            from.parse().map_err(|e| anyhow::anyhow!("bad configuration: smtp.from {:?}: {e}", smtp.from))?;
        if from.name.is_none() {
            from.name = Some(default_name.into());
        }
        let mailboxes = |key: &str, list: &[String]| -> anyhow::Result<Vec<Mailbox>> {
            list.iter()
                .map(|a| a.parse().map_err(|e| anyhow::anyhow!("bad configuration: smtp.{key} {a:?}: {e}")))
                .collect()
        };
        let mut to = mailboxes("to", &smtp.to)?;
        if to.is_empty() {
            // Only reachable with SMTP disabled (the loader requires `to` otherwise).
            to.push("outbox <outbox@localhost>".parse().expect("a valid address"));
        }
        Ok(Self {
            templates,
            from,
            to,
            cc: mailboxes("cc", &smtp.cc)?,
            bcc: mailboxes("bcc", &smtp.bcc)?,
            recipients: smtp.recipients(),
            zone: smtp.reader_zone(),
            unsubscribe: None,
            picture_links: None,
        })
    }

    /// Notifications carry `unsubscribe`'s link from now on, and their picture links are
    /// signed by `picture_links` (private pictures).
    pub fn set_links(&mut self, unsubscribe: Unsubscribe, picture_links: Option<PictureLinks>) {
        self.unsubscribe = Some(unsubscribe);
        self.picture_links = picture_links;
    }

    /// A plain-text mail from `[smtp] from` to `[smtp] to` (an operator's alert).
    pub fn to_operator(&self, subject: String, text: String) -> anyhow::Result<Message> {
        let mut builder = Message::builder().from(self.from.clone()).subject(subject);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        Ok(builder.header(ContentType::TEXT_PLAIN).body(text)?)
    }

    /// The readers' time zone, for the times a mail shows.
    pub fn zone(&self) -> &jiff::tz::TimeZone {
        &self.zone
    }

    /// Whether a request may name its own recipient (`[smtp] allowed_recipients`).
    pub fn takes_request_recipients(&self) -> bool {
        self.recipients.any()
    }

    /// The primary recipients of a notice: the request's own when allowed, else `to`;
    /// never one it skips.
    pub fn recipients_for(&self, notice: &Notice) -> Vec<Mailbox> {
        let mut primary = self.primary(notice);
        primary.retain(|mailbox| !skipped(notice, mailbox));
        primary
    }

    fn primary(&self, notice: &Notice) -> Vec<Mailbox> {
        match &notice.notify_email {
            Some(address) if self.recipients.allows(address) => match address.parse() {
                Ok(mailbox) => vec![mailbox],
                Err(_) => self.to.clone(),
            },
            Some(address) => {
                // ingest checks this; a message published straight to NATS may not have been.
                tracing::warn!(job = %notice.job_id, address = %crate::redact::email(address), "notify_email not in allowed_recipients; using [smtp] to");
                self.to.clone()
            }
            None => self.to.clone(),
        }
    }

    /// Everyone the notice is addressed to, skipped or not, for the log.
    pub fn all_recipients(&self, notice: &Notice) -> Vec<String> {
        let primary = self.primary(notice);
        primary.iter().chain(&self.cc).chain(&self.bcc).map(|m| m.email.to_string()).collect()
    }

    pub fn compose(&self, notice: &Notice, image: Option<InlineImage>) -> anyhow::Result<Message> {
        let mut context = notice.context.clone();
        if let Some(links) = &self.picture_links {
            links.sign_json(&mut context, OffsetDateTime::now_utc());
        }
        if image.is_some() {
            context["image_src"] = Value::String(format!("cid:{IMAGE_CID}"));
        }
        let rendered = self.templates.render(notice.kind, &context)?;
        let message_id = format!("<huiying.{}.{}@{}>", notice.kind.name(), notice.job_id, self.from.email.domain());
        let body = match image {
            None => MultiPart::alternative_plain_html(rendered.text, rendered.html),
            Some(image) => MultiPart::alternative().singlepart(SinglePart::plain(rendered.text)).multipart(
                MultiPart::related().singlepart(SinglePart::html(rendered.html)).singlepart(
                    Attachment::new_inline(IMAGE_CID.into())
                        .body(image.bytes, ContentType::parse(image.content_type).expect("a valid content type")),
                ),
            ),
        };
        self.message(&rendered.subject, message_id, self.recipients_for(notice), body, Some(notice))
    }

    /// The mail `huiying mail test` sends: no template involved, both languages.
    pub fn compose_test(&self) -> anyhow::Result<Message> {
        let text = "这是一封来自绘影（huiying）的测试邮件：您的 SMTP 配置可以正常发送邮件。\n\n\
                    This is a test mail from huiying: your SMTP settings can send mail.\n";
        let html = format!("<p>{}</p>", text.replace('\n', "<br>"));
        let body = MultiPart::alternative_plain_html(text.to_string(), html);
        let id = format!("<huiying.test.{}@{}>", uuid::Uuid::new_v4(), self.from.email.domain());
        self.message("绘影测试邮件 / huiying test mail", id, self.to.clone(), body, None)
    }

    /// A message; a notification's (`notice`) without the recipients it skips, and with
    /// its unsubscribe link for its primary recipients.
    fn message(
        &self,
        subject: &str,
        message_id: String,
        to: Vec<Mailbox>,
        body: MultiPart,
        notice: Option<&Notice>,
    ) -> anyhow::Result<Message> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            // Stable per job and kind, so a receiving server can spot a duplicate too.
            .message_id(Some(message_id));
        if let (Some(unsubscribe), Some(_)) = (&self.unsubscribe, notice)
            && !to.is_empty()
        {
            let readers: Vec<String> = to.iter().map(|mailbox| mailbox.email.to_string()).collect();
            builder = builder.header(unsubscribe.header(&readers)).header(ListUnsubscribePost);
        }
        for mailbox in to {
            builder = builder.to(mailbox);
        }
        let kept = |mailbox: &&Mailbox| notice.is_none_or(|notice| !skipped(notice, mailbox));
        for mailbox in self.cc.iter().filter(kept) {
            builder = builder.cc(mailbox.clone());
        }
        for mailbox in self.bcc.iter().filter(kept) {
            builder = builder.bcc(mailbox.clone());
        }
        // The multipart's Content-Type among the message's own headers, not inside its
        // body where lettre puts it: so it is DKIM-signed with the rest (smtp::dkim).
        let formatted = body.formatted();
        let head = body.headers().to_string();
        let content_type = body.headers().get::<ContentType>().expect("a multipart has a Content-Type");
        let encoded =
            Body::dangerous_pre_encoded(formatted[head.len() + 2..].to_vec(), ContentTransferEncoding::SevenBit);
        Ok(builder.header(MIME_VERSION_1_0).header(content_type).body(encoded)?)
    }
}

/// Whether the notice skips this recipient.
fn skipped(notice: &Notice, mailbox: &Mailbox) -> bool {
    notice.skip.iter().any(|address| mailbox.email.to_string().eq_ignore_ascii_case(address))
}

/// A generation's completion at `at`, as the templates see real ones.
fn sample_completed(at: OffsetDateTime) -> ImageCompleted {
    let url = "http://localhost:8000/static/images/huiying_image_sample.jpg".to_string();
    let id = JobId::parse("sample").expect("a constant id");
    ImageCompleted {
        owner: None,
        group: None,
        cost: Cost { cost_usd: Some(0.039), cost_source: CostSource::Reported, usage: None },
        version: EVENT_VERSION,
        id: id.clone(),
        prompt: Prompt::parse("一只在月球上的猫").expect("a constant prompt"),
        english_prompt: "a cat on the moon".into(),
        model: ModelName::parse(PLACEHOLDER_MODEL).expect("a constant model name"),
        url: url.clone(),
        local_url: url,
        r2_url: None,
        filename: "huiying_image_sample.jpg".into(),
        width: 512,
        height: 512,
        format: "jpeg".into(),
        file_size: 20_000,
        labels: Labels { implicit: true, explicit: true },
        kind: JobKind::Generate,
        inputs: Vec::new(),
        requested_at: at,
        completed_at: at,
        duration_ms: 1500,
        ignored_options: vec!["seed".into()],
        fallback: None,
        notify_email: None,
        callback: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chinese_mail_shows_times_in_utc_plus_8_and_its_date_header_parses() {
        let mut smtp = SmtpConfig { to: vec!["me@example.com".into()], ..SmtpConfig::default() };
        let composer = Composer::from_config(&smtp).unwrap();
        let done = sample_completed(time::macros::datetime!(2026-12-07 11:30 UTC));
        let notice = Notice::completed(&done, composer.zone());
        assert_eq!(notice.context["completed_at"], "2026-12-07 19:30:00 (UTC+08:00)");
        let message = String::from_utf8(composer.compose(&notice, None).unwrap().formatted()).unwrap();
        let date = message.lines().find_map(|line| line.strip_prefix("Date: ")).expect("a Date header");
        time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc2822).expect("RFC 5322 date");
        // English templates read UTC, and [smtp] timezone wins over both.
        smtp.language = Language::En;
        let english = Composer::from_config(&smtp).unwrap();
        assert_eq!(Notice::completed(&done, english.zone()).context["completed_at"], "2026-12-07 11:30:00 (UTC+00:00)");
        smtp.timezone = "Europe/Berlin".into();
        let berlin = Composer::from_config(&smtp).unwrap();
        assert_eq!(Notice::completed(&done, berlin.zone()).context["completed_at"], "2026-12-07 12:30:00 (UTC+01:00)");
    }
}
