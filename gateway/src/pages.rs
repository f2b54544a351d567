//! The gateway's own pages (signed out, access denied, login problems). Self-contained HTML:
//! no external assets, because the gateway may have no internet.

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page with a heading, a message and an optional button.
pub fn render(title: &str, message: &str, button: Option<(&str, &str)>) -> String {
    let button = button
        .map(|(href, label)| {
            format!(
                r#"<p><a class="button" href="{}">{}</a></p>"#,
                escape(href),
                escape(label)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; background: #121212;
         color: #fff; display: flex; min-height: 100vh; margin: 0; align-items: center;
         justify-content: center; }}
  main {{ max-width: 28rem; padding: 2rem; text-align: center; }}
  h1 {{ font-size: 1.6rem; }}
  p {{ color: #b3b3b3; line-height: 1.5; }}
  a.button {{ display: inline-block; background: #1ed760; color: #000; font-weight: 700;
              padding: .8rem 2rem; border-radius: 2rem; text-decoration: none; }}
  a.button:focus {{ outline: 3px solid #fff; outline-offset: 2px; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>{message}</p>
{button}
</main>
</body>
</html>
"#,
        title = escape(title),
        message = escape(message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let page = render("<b>", "\"x\" & 'y'", Some(("/a?b=1&c=<", "Go")));
        assert!(page.contains("&lt;b&gt;"));
        assert!(page.contains("&quot;x&quot; &amp; &#39;y&#39;"));
        assert!(page.contains("/a?b=1&amp;c=&lt;"));
        assert!(!page.contains("<b>"));
    }
}
