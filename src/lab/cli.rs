//! `pipework lab` flags and dispatch.
use crate::error::Result;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    pub cmd: LabCmd,
}

#[derive(Subcommand, Debug)]
pub enum LabCmd {
    /// Build the lab, or converge it to the file.
    Up { file: String },
}

pub fn run(_a: &LabArgs) -> Result<i32> {
    Ok(0)
}
