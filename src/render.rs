//! The minijinja environment every layer and kickstart template renders in.

use anyhow::Result;
use minijinja::{Environment, UndefinedBehavior, Value};

use crate::data::DataTree;

/// Secrets render as placeholders that only a node's seed or kickstart can fill in, so role
/// images, bundles and plans never hold them. `apply` substitutes them on the node; the syntax
/// is the bundle format's.
pub use crate::bundle::format::{SECRET_PREFIX, SECRET_SUFFIX, secret_placeholder};

fn secret(name: String) -> Result<String, minijinja::Error> {
    if crate::secrets::is_known(&name) {
        Ok(secret_placeholder(&name))
    } else {
        Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!(
                "unknown secret {name:?} (known: {})",
                crate::secrets::names().collect::<Vec<_>>().join(", ")
            ),
        ))
    }
}

/// Secret names whose placeholders occur in `text`.
pub fn secrets_used(text: &[u8]) -> Vec<String> {
    crate::secrets::names()
        .filter(|s| {
            let p = secret_placeholder(s);
            text.windows(p.len()).any(|w| w == p.as_bytes())
        })
        .map(|s| s.to_string())
        .collect()
}

pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A typo in a template is an error, not an empty string in a config file.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Config files end with a newline and block tags leave no blank lines (as Ansible renders);
    // the builder cannot fail for the default delimiters.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_function("secret", secret);
    env
}

/// Render the data file `path` of `tree` with `ctx`; errors name the file and line.
pub fn render_file(tree: &DataTree, path: &str, ctx: &Value) -> Result<String> {
    let src = tree.get_str(path)?;
    render_str(&format!("{}/{path}", tree.origin), src, ctx)
}

pub fn render_str(name: &str, src: &str, ctx: &Value) -> Result<String> {
    let mut env = environment();
    env.add_template_owned(name.to_string(), src.to_string())
        .map_err(|e| template_error(name, src, &e))?;
    let t = env
        .get_template(name)
        .map_err(|e| template_error(name, src, &e))?;
    t.render(ctx).map_err(|e| template_error(name, src, &e))
}

/// Evaluate a `when` expression; `name` says which manifest it came from.
pub fn eval_bool(name: &str, expr: &str, ctx: &Value) -> Result<bool> {
    let env = environment();
    let e = env
        .compile_expression(expr)
        .map_err(|e| anyhow::anyhow!("{name}: `when` expression {expr:?}: {e}"))?;
    let v = e
        .eval(ctx)
        .map_err(|e| anyhow::anyhow!("{name}: `when` expression {expr:?}: {e}"))?;
    Ok(v.is_true())
}

/// `template error in FILE:LINE: kind: detail: `expression``: the failing expression from the
/// error's span, so "undefined value" says which one.
fn template_error(name: &str, src: &str, e: &minijinja::Error) -> anyhow::Error {
    let line = e.line().map(|l| format!(":{l}")).unwrap_or_default();
    let mut msg = format!("template error in {name}{line}: {}", e.kind());
    if let Some(d) = e.detail() {
        msg.push_str(": ");
        msg.push_str(d);
    }
    if let Some(expr) = e.range().and_then(|r| src.get(r))
        && !expr.is_empty()
        && expr.len() <= 200
        && !expr.contains('\n')
    {
        msg.push_str(&format!(": `{expr}`"));
    }
    anyhow::anyhow!(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undefined_value_is_named() {
        let ctx = Value::from(minijinja::value::Serde(
            serde_json::json!({"node": {"ip": "10.0.0.1"}}),
        ));
        let e = render_str("t.j2", "a\nip {{ node.ip }} {{ node.no_such }}\n", &ctx)
            .expect_err("undefined");
        let e = format!("{e:#}");
        assert!(
            e.starts_with("template error in t.j2:2: undefined value"),
            "{e}"
        );
        assert!(e.ends_with("`node.no_such`"), "{e}");
    }
}
