//! Mail templates: handlebars files `<language>/<kind>.<part>.hbs`, where part is
//! `subject`, `html` or `text`, built into the binary from `templates/` or read from
//! `[smtp] templates_dir` when set. HTML parts escape every value; text parts
//! and subjects do not (a subject's line breaks are removed, so no header can be
//! injected through it).

use std::path::{Path, PathBuf};

use crate::config::Language;

use handlebars::Handlebars;
use serde::Serialize;

/// The notifications the mailer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Completed,
    Failed,
    /// Every job of a group ended (`n` pictures of one request): one mail for all.
    Group,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Completed => "completed",
            Kind::Failed => "failed",
            Kind::Group => "group",
        }
    }
}

/// A rendered mail.
#[derive(Debug, Clone)]
pub(super) struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum TemplateError {
    #[error("mail template {file}: {message}")]
    Load { file: PathBuf, message: String },
    #[error("rendering mail template {name}: {message}")]
    Render { name: String, message: String },
}

pub(super) struct Templates {
    html: Handlebars<'static>,
    plain: Handlebars<'static>,
}

impl Templates {
    /// Parses all nine templates of `language`, from `dir` or, when it is empty, the
    /// built-in ones; a missing or broken one names its file and line.
    pub(super) fn load(dir: &Path, language: Language) -> Result<Self, TemplateError> {
        let mut html = Handlebars::new();
        let mut plain = Handlebars::new();
        plain.register_escape_fn(handlebars::no_escape);
        for kind in [Kind::Completed, Kind::Failed, Kind::Group] {
            for part in ["subject", "html", "text"] {
                let relative = Path::new(language.tag()).join(format!("{}.{part}.hbs", kind.name()));
                let file = dir.join(&relative);
                // A templates_dir made before group mails has none: the built-in one serves.
                let missing_group = kind == Kind::Group && !file.exists();
                let source = if dir.as_os_str().is_empty() || missing_group {
                    built_in(&relative).to_string()
                } else {
                    std::fs::read_to_string(&file)
                        .map_err(|e| TemplateError::Load { file: file.clone(), message: e.to_string() })?
                };
                let registry = if part == "html" { &mut html } else { &mut plain };
                registry
                    .register_template_string(&template_name(kind, part), source)
                    .map_err(|e| TemplateError::Load { file: file.clone(), message: e.to_string() })?;
            }
        }
        Ok(Self { html, plain })
    }

    pub(super) fn render(&self, kind: Kind, data: &impl Serialize) -> Result<Rendered, TemplateError> {
        let render = |registry: &Handlebars<'static>, part: &str| {
            let name = template_name(kind, part);
            registry.render(&name, data).map_err(|e| TemplateError::Render { name, message: e.to_string() })
        };
        let subject = render(&self.plain, "subject")?;
        Ok(Rendered {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            html: render(&self.html, "html")?,
            text: render(&self.plain, "text")?,
        })
    }
}

/// The templates of `templates/`, built into the binary so that it runs from any folder.
const BUILT_IN: &[(&str, &str)] = &[
    ("zh-CN/completed.subject.hbs", include_str!("../../templates/zh-CN/completed.subject.hbs")),
    ("zh-CN/completed.html.hbs", include_str!("../../templates/zh-CN/completed.html.hbs")),
    ("zh-CN/completed.text.hbs", include_str!("../../templates/zh-CN/completed.text.hbs")),
    ("zh-CN/failed.subject.hbs", include_str!("../../templates/zh-CN/failed.subject.hbs")),
    ("zh-CN/failed.html.hbs", include_str!("../../templates/zh-CN/failed.html.hbs")),
    ("zh-CN/failed.text.hbs", include_str!("../../templates/zh-CN/failed.text.hbs")),
    ("en/completed.subject.hbs", include_str!("../../templates/en/completed.subject.hbs")),
    ("en/completed.html.hbs", include_str!("../../templates/en/completed.html.hbs")),
    ("en/completed.text.hbs", include_str!("../../templates/en/completed.text.hbs")),
    ("en/failed.subject.hbs", include_str!("../../templates/en/failed.subject.hbs")),
    ("en/failed.html.hbs", include_str!("../../templates/en/failed.html.hbs")),
    ("en/failed.text.hbs", include_str!("../../templates/en/failed.text.hbs")),
    ("zh-CN/group.subject.hbs", include_str!("../../templates/zh-CN/group.subject.hbs")),
    ("zh-CN/group.html.hbs", include_str!("../../templates/zh-CN/group.html.hbs")),
    ("zh-CN/group.text.hbs", include_str!("../../templates/zh-CN/group.text.hbs")),
    ("en/group.subject.hbs", include_str!("../../templates/en/group.subject.hbs")),
    ("en/group.html.hbs", include_str!("../../templates/en/group.html.hbs")),
    ("en/group.text.hbs", include_str!("../../templates/en/group.text.hbs")),
];

fn built_in(relative: &Path) -> &'static str {
    let name = relative.to_string_lossy().replace('\\', "/");
    BUILT_IN.iter().find(|(file, _)| *file == name).map(|(_, text)| *text).expect("every template is built in")
}

fn template_name(kind: Kind, part: &str) -> String {
    format!("{}.{part}", kind.name())
}
