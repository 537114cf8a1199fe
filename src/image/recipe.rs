//! Recipe files as templates: the base's config files, its bake entry point and the bake seed
//! live beside the code (`include_str!`), with `{{NAME}}` placeholders filled here. Not
//! `format!` strings: the file reads as what lands on the disk, and braces need no escaping.
//! The bytes they produce are inputs of the base and bake cache keys.

use anyhow::{Result, bail};

/// `template` (named `name` in errors) with every `{{NAME}}` replaced by its value in `vars`. A
/// placeholder with no value, or a `{{` that does not open one, is an error: nothing is written
/// half-filled.
pub fn fill(name: &str, template: &str, vars: &[(&str, &str)]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            bail!("recipe {name}: `{{{{` with no closing `}}}}`");
        };
        let key = &after[..j];
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("recipe {name}: `{{{{{key}}}}}` is not a placeholder (NAME: A-Z, 0-9, _)");
        }
        match vars.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => out.push_str(v),
            None => bail!("recipe {name}: no value for the placeholder {{{{{key}}}}}"),
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_refuses_unknown_or_broken_placeholders() {
        let t = "root=UUID={{UUID}} {{CMDLINE}}\nmenuentry 'x' {\n}\n";
        assert_eq!(
            fill("t", t, &[("UUID", "u-1"), ("CMDLINE", "console=ttyS0")]).expect("filled"),
            "root=UUID=u-1 console=ttyS0\nmenuentry 'x' {\n}\n"
        );
        let e = fill("grub.cfg", t, &[("UUID", "u")]).expect_err("unfilled");
        assert!(e.to_string().contains("grub.cfg"), "{e}");
        assert!(e.to_string().contains("{{CMDLINE}}"), "{e}");
        for bad in ["a {{ b", "{{lower}}", "{{}}"] {
            assert!(fill("t", bad, &[]).is_err(), "{bad}");
        }
        // Filled values are not scanned again.
        assert_eq!(fill("t", "{{A}}", &[("A", "{{B}}")]).expect("ok"), "{{B}}");
    }
}
