//! One function per subcommand.

use anyhow::Result;

use crate::cli::{BuildArgs, CompletionsArgs, Global, InitArgs, PlanArgs};

pub fn init(_a: &InitArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
pub fn check(_g: &Global) -> Result<()> {
    anyhow::bail!("not yet")
}
pub fn plan(_g: &Global, _a: &PlanArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
pub fn build(_g: &Global, _a: &BuildArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
pub fn completions(_a: &CompletionsArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
