//! Message templates: raw RFC 5322 messages (and SMS texts, HTML pages) with `__placeholder__`
//! substitution, as the Node service uses them, with the same file names.
//!
//! A file of that name in `template_dir` replaces the built-in default. Every placeholder is
//! substituted: known ones by their value, unknown ones by nothing. Values never carry line
//! breaks, so they cannot add headers to a message.

use std::path::Path;

/// A template: its file name and the built-in text.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// File name looked up in `template_dir`.
    pub name: &'static str,
    default: &'static str,
}

/// The e-mail validation message (`validate/email/requestToken`).
pub const MAIL_VERIFICATION: Template =
    Template { name: "mailVerification.tpl", default: include_str!("../../templates/mailVerification.tpl") };
/// The invitation e-mail (`store-invite`).
pub const MAIL_INVITATION: Template =
    Template { name: "3pidInvitation.tpl", default: include_str!("../../templates/3pidInvitation.tpl") };
/// The invitation SMS (`store-invite` for `msisdn`).
pub const SMS_INVITATION: Template =
    Template { name: "3pidSmsInvitation.tpl", default: include_str!("../../templates/3pidSmsInvitation.tpl") };
/// The phone validation SMS (`validate/msisdn/requestToken`).
pub const SMS_VERIFICATION: Template =
    Template { name: "smsVerification.tpl", default: include_str!("../../templates/smsVerification.tpl") };
/// The page shown by `GET submitToken` on success.
pub const PAGE_SUCCESS: Template =
    Template { name: "validationSuccess.html", default: include_str!("../../templates/validationSuccess.html") };
/// The page shown by `GET submitToken` on failure (`__message__` says why).
pub const PAGE_FAILURE: Template =
    Template { name: "validationFailure.html", default: include_str!("../../templates/validationFailure.html") };

/// Every template, for the documentation and the startup check.
pub const ALL: [Template; 6] =
    [MAIL_VERIFICATION, MAIL_INVITATION, SMS_INVITATION, SMS_VERIFICATION, PAGE_SUCCESS, PAGE_FAILURE];

impl Template {
    /// The template text: `template_dir/<name>` when it exists, else the built-in one.
    pub fn load(&self, template_dir: &str) -> std::io::Result<String> {
        if !template_dir.is_empty() {
            let path = Path::new(template_dir).join(self.name);
            if path.is_file() {
                return std::fs::read_to_string(path);
            }
        }
        Ok(self.default.to_owned())
    }
}

/// Substitutes `__name__` by the value of `name` in `values` (line breaks removed), and any
/// other `__word__` placeholder by nothing.
#[must_use]
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("__") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_length =
            after.bytes().take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_').count();
        // The name ends at the first "__" inside the run of name characters.
        let name_end = after[..name_length].find("__").filter(|end| *end > 0);
        match name_end {
            Some(end) => {
                let name = &after[..end];
                if let Some((_, value)) = values.iter().find(|(key, _)| *key == name) {
                    out.extend(value.chars().filter(|c| *c != '\r' && *c != '\n'));
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("__");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Renders a raw message: values are inserted as they are in headers and text parts, and
/// HTML-escaped inside `text/html` parts (a part is HTML from its `Content-Type: text/html`
/// line to the next `Content-Type` line).
#[must_use]
pub fn render_message(template: &str, values: &[(&str, &str)]) -> String {
    let escaped: Vec<(&str, String)> = values.iter().map(|(key, value)| (*key, html_escape(value))).collect();
    let escaped: Vec<(&str, &str)> = escaped.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let mut html = false;
    let mut out = String::with_capacity(template.len() + 256);
    for line in template.split_inclusive('\n') {
        if line.get(..13).is_some_and(|start| start.eq_ignore_ascii_case("content-type:")) {
            html = line.to_ascii_lowercase().contains("text/html");
        }
        out.push_str(&render(line, if html { &escaped } else { values }));
    }
    out
}

/// Escapes text for an HTML context.
#[must_use]
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Line endings as SMTP wants them (CRLF).
#[must_use]
pub fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_all_substituted() {
        let text =
            render("Hi __name__, __unknown__ x__y __a_b__ ____ __token__.", &[("name", "Bob\r\nBcc: x"), ("a_b", "1")]);
        assert_eq!(text, "Hi BobBcc: x,  x__y 1 ____ .");
        assert_eq!(render("no placeholders", &[]), "no placeholders");
        assert_eq!(render("__a____b__", &[("a", "1"), ("b", "2")]), "12");
    }

    #[test]
    fn defaults_hold_their_placeholders() {
        let mail = MAIL_VERIFICATION.load("").unwrap();
        for placeholder in ["__link__", "__token__", "__to__", "__from__", "__messageid__", "__date__"] {
            assert!(mail.contains(placeholder), "{placeholder}");
        }
        assert!(html_escape("<b>\"x\" & 'y'</b>").starts_with("&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;"));
        assert_eq!(crlf("a\nb\r\nc"), "a\r\nb\r\nc");
        let message = "Subject: __x__\nContent-Type: text/plain\n\n__x__\nContent-Type: text/html\n\n<p>__x__</p>\n";
        assert_eq!(
            render_message(message, &[("x", "A & <B>")]),
            "Subject: A & <B>\nContent-Type: text/plain\n\nA & <B>\nContent-Type: text/html\n\n<p>A &amp; &lt;B&gt;</p>\n"
        );
    }
}
