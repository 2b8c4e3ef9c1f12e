//! `vdctl status`: loaded modules and their ABI.

use crate::dev;
use anyhow::Result;
use serde::Serialize;
use std::process::ExitCode;
use vd_uapi::{VdDriver, VD_ABI_VERSION};

#[derive(Serialize, Debug)]
struct ModuleStatus {
    module: &'static str,
    device: String,
    loaded: bool,
    /// `None` when the device could not be asked.
    abi_version: Option<u32>,
    abi_compatible: bool,
    module_version: Option<String>,
    features: Option<u64>,
    open_files: Option<u32>,
    objects: Option<u32>,
    error: Option<String>,
}

#[derive(Serialize, Debug)]
struct Status {
    vdctl_abi_version: u32,
    modules: Vec<ModuleStatus>,
}

fn loaded_modules() -> Vec<String> {
    std::fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn probe(d: VdDriver, loaded: &[String]) -> ModuleStatus {
    let node = dev::node(d);
    let mut s = ModuleStatus {
        module: d.module_name(),
        device: node.display().to_string(),
        loaded: loaded.iter().any(|m| m == d.module_name()),
        abi_version: None,
        abi_compatible: false,
        module_version: None,
        features: None,
        open_files: None,
        objects: None,
        error: None,
    };
    if !s.loaded {
        return s;
    }
    match dev::open(&node).and_then(|f| Ok(dev::version(&f)?)) {
        Ok(v) => {
            if v.driver != d as u32 {
                s.error = Some(format!(
                    "{} answered as driver {}, expected {}",
                    s.device, v.driver, d as u32
                ));
            }
            s.abi_version = Some(v.abi_version);
            s.abi_compatible = v.abi_version == VD_ABI_VERSION && s.error.is_none();
            s.module_version = Some(dev::fixed_str(&v.module_version));
            s.features = Some(v.features);
            s.open_files = Some(v.open_files);
            s.objects = Some(v.objects);
        }
        Err(e) => s.error = Some(format!("{e:#}")),
    }
    s
}

/// Runs `vdctl status`. Exit code 0 when every loaded module speaks our ABI, 1 otherwise.
pub fn run(json: bool) -> Result<ExitCode> {
    let loaded = loaded_modules();
    let st = Status {
        vdctl_abi_version: VD_ABI_VERSION,
        modules: VdDriver::ALL.iter().map(|&d| probe(d, &loaded)).collect(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        println!(
            "{:<14} {:<16} {:<7} {:<4} {:<8} {:>5} {:>7}  NOTE",
            "MODULE", "DEVICE", "LOADED", "ABI", "VERSION", "FILES", "OBJECTS"
        );
        for m in &st.modules {
            let opt = |v: Option<u32>| v.map_or("-".to_owned(), |v| v.to_string());
            let note = match (&m.error, m.loaded, m.abi_compatible) {
                (Some(e), _, _) => e.clone(),
                (None, false, _) => format!("not loaded: insmod {}.ko", m.module),
                (None, true, false) => format!("ABI mismatch: vdctl speaks {VD_ABI_VERSION}"),
                _ => String::new(),
            };
            println!(
                "{:<14} {:<16} {:<7} {:<4} {:<8} {:>5} {:>7}  {}",
                m.module,
                m.device,
                if m.loaded { "yes" } else { "no" },
                opt(m.abi_version),
                m.module_version.as_deref().unwrap_or("-"),
                opt(m.open_files),
                opt(m.objects),
                note
            );
        }
    }
    let bad = st.modules.iter().any(|m| m.loaded && !m.abi_compatible);
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
