//! Roles (`roles/<role>.toml`): an ordered list of layers plus parameters.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::DataTree;
use crate::tomlfile;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    #[serde(skip_deserializing)]
    pub name: String,
    pub description: String,
    pub layers: Vec<String>,
    #[serde(default)]
    pub params: toml::Table,
}

pub fn names(tree: &DataTree) -> Vec<String> {
    tree.files_in("roles", ".toml")
        .into_iter()
        .map(|(n, _)| n.trim_end_matches(".toml").to_string())
        .collect()
}

pub fn load(tree: &DataTree, name: &str) -> Result<Role> {
    let path = format!("roles/{name}.toml");
    let text = tree
        .get_str(&path)
        .with_context(|| format!("unknown role {name:?} (known: {})", names(tree).join(", ")))?;
    let mut role: Role = tomlfile::parse(text, &format!("{}/{path}", tree.origin))?;
    role.name = name.to_string();
    Ok(role)
}
