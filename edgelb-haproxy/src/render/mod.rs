//! The HAProxy config renderer: a snapshot and an edge node in, `haproxy.cfg` out.
//!
//! * [`HaproxyRenderer`] renders with minijinja from the built-in template
//!   (`templates/haproxy.cfg.j2`) or your own (`RenderOptions::template_dir`).
//! * [`RenderOptions`] is the `haproxy:` section of edgelb's config file.
//! * Servers sit in stable slots (see [`slot_name`]), so endpoint changes can go through the
//!   runtime API without a reload.

mod acl;
mod blame;
mod context;
mod duration;
mod ident;
mod live;
mod options;
mod privilege;
mod slots;

use std::net::Ipv6Addr;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use edgelb_core::{
    EdgeNode, Endpoint, PortSpec, ProxyProtocol, RenderedConfig, ServiceKey, Snapshot,
};
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

pub use acl::{
    PLACED_SOURCE_ACL_ID_BASE, RANGES_PER_LINE, SOURCE_ACL_ID_BASE, SOURCE_ACL_NAME,
    placed_source_acl_id, source_acl_id,
};
pub use context::{AFFINITY_TABLE_SIZE, SPARE_ADDRESS};
pub use duration::{ConfigDuration, MAX_HAPROXY_MILLIS};
pub use ident::{backend_name, frontend_name, frontend_name_at};
pub use options::{Balance, HealthCheck, MAX_SLOT_SETTING, RenderOptions, SlotOptions, Timeouts};
pub use privilege::{LogTarget, RunAs};
pub use slots::slot_name;

use crate::error::{Error, Result};
use slots::SlotMemory;

/// The name of the main template, in `template_dir` and built in.
pub const TEMPLATE_NAME: &str = "haproxy.cfg.j2";

/// The name under which the built-in template stays reachable for `{% extends %}`.
pub const BUILTIN_TEMPLATE_NAME: &str = "builtin/haproxy.cfg.j2";

/// Template instructions every render may execute, beyond [`FUEL_PER_ITEM`] per server line
/// and frontend. The built-in template needs a small fraction of this; a template that loops
/// without end (`range(100000)` nested) stops at this bound, in about a second, with an error.
pub const FUEL_BASE: u64 = 5_000_000;

/// Template instructions allowed per server line and frontend of the snapshot.
pub const FUEL_PER_ITEM: u64 = 500;

/// The built-in template's source.
pub const BUILTIN_TEMPLATE: &str = include_str!("../../templates/haproxy.cfg.j2");

/// Renders `haproxy.cfg` for edge nodes.
///
/// One renderer serves every node and every snapshot of a controller: it remembers which
/// server slot each endpoint sits in (per backend), so an endpoint keeps its slot across
/// renders and endpoint-only changes stay runtime-API material. Every node gets identical
/// backends; only `bind` lines differ between nodes. A fresh renderer places endpoints in
/// address order, so the same snapshot renders byte-identically from any fresh renderer,
/// and rendering the same snapshot twice in a row gives the same bytes.
///
/// ```
/// use edgelb_core::{EdgeNode, Endpoint, PortSpec, ProxyProtocol, Renderer, ServiceKey, Snapshot};
/// use edgelb_haproxy::{HaproxyRenderer, RenderOptions};
///
/// let mut snapshot = Snapshot::default();
/// snapshot.insert_port(
///     ServiceKey::new("kube-system", "traefik")?,
///     "websecure",
///     PortSpec::new(443, ProxyProtocol::V2)
///         .with_endpoint(Endpoint::ready("10.42.0.7".parse()?, 8443))
///         .with_endpoint(Endpoint::draining("fd00::7".parse()?, 8443)),
/// )?;
/// let node = EdgeNode::new("edge-1").with_bind(443, "ipv6@:443");
///
/// let renderer = HaproxyRenderer::new(RenderOptions::default())?;
/// let config = renderer.render(&snapshot, &node)?;
///
/// assert!(config.text.starts_with("# edgelb-digest: sha256:"));
/// assert!(config.text.contains("bind ipv6@:443\n"));
/// assert!(config.text.contains("backend be_kube-system_traefik_websecure\n"));
/// assert!(config.text.contains(
///     "server s001 10.42.0.7:8443 id 1 check inter 2s fall 3 rise 2 send-proxy-v2 check-send-proxy\n"
/// ));
/// assert!(config.text.contains("server s002 [fd00::7]:8443 id 2 check inter 2s fall 3 rise 2 send-proxy-v2 check-send-proxy weight 0\n"));
/// assert!(config.text.contains("server s003 127.0.0.1:1 id 3 check inter 2s fall 3 rise 2 send-proxy-v2 check-send-proxy disabled\n"));
/// // Same input, same bytes.
/// assert_eq!(renderer.render(&snapshot, &node)?, config);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct HaproxyRenderer {
    env: Environment<'static>,
    options: RenderOptions,
    template_source: String,
    memory: Mutex<SlotMemory>,
}

impl HaproxyRenderer {
    /// Builds a renderer: validates `options`, loads the template (yours from
    /// `template_dir` if set, else the built-in one) and tries it on a small sample, so a
    /// broken template fails here, with its line number, rather than at the first deploy.
    pub fn new(options: RenderOptions) -> Result<Self> {
        options.validate()?;
        let template_source = match &options.template_dir {
            Some(dir) => {
                check_template_dir(dir)?;
                dir.join(TEMPLATE_NAME).display().to_string()
            }
            None => format!("built-in {TEMPLATE_NAME}"),
        };
        let env = environment(options.template_dir.clone());
        env.get_template(TEMPLATE_NAME)
            .map_err(|err| template_error(&template_source, &err))?;
        let renderer = Self {
            env,
            options,
            template_source,
            memory: Mutex::new(SlotMemory::default()),
        };
        renderer.dry_run()?;
        Ok(renderer)
    }

    /// The options this renderer was built with.
    pub fn options(&self) -> &RenderOptions {
        &self.options
    }

    /// Renders `snapshot` for `node`: validates both, places endpoints in slots and renders
    /// the template. The result starts with the digest line.
    ///
    /// Errors: [`Error::Validation`] for a snapshot or node that fails validation,
    /// [`Error::InvalidInput`] for a value that cannot go into the config,
    /// [`Error::Template`] for a template that fails (with its line number).
    pub fn render_config(&self, snapshot: &Snapshot, node: &EdgeNode) -> Result<RenderedConfig> {
        self.options.validate_node(node)?;
        // Only the Services placed on this node (a no-op when the pipeline placed them).
        let snapshot = &*snapshot.placed_on(node);
        snapshot
            .validate_on(std::slice::from_ref(node))
            .map_err(|source| Error::Validation {
                object: "snapshot".to_owned(),
                source,
            })?;
        let ctx = {
            // A panic elsewhere while holding the lock leaves the memory consistent enough:
            // at worst some endpoints move to other slots once.
            let mut memory = self
                .memory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            context::build(snapshot, node, &self.options, &mut memory)?
        };
        let body = self.render_template(&ctx)?;
        acl::check_rendered(snapshot, &body).map_err(|message| Error::Template {
            name: self.template_source.clone(),
            message,
        })?;
        Ok(RenderedConfig::from_body(body))
    }

    /// Continues from the server slots of a config this renderer's kind wrote (the live file
    /// of an edge), so endpoints stay where the edge has them: for a process that starts
    /// fresh, such as `edgelb plan` or a restarted controller. Backends it cannot read are
    /// placed afresh on the next render. Returns how many backends were seeded (0 for a file
    /// with no server slots of edgelb's, such as a distribution's default `haproxy.cfg`).
    pub fn seed_slots_from_config(&self, config: &str) -> usize {
        let mut memory = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut seeded = 0;
        for (backend, live) in live::live_slots(config) {
            memory.seed(&backend, slots::SlotTable::from_live(&live));
            seeded += 1;
        }
        seeded
    }

    /// Renders with fuel for the context's size: the work a template may do is bounded.
    fn render_template(&self, ctx: &context::Context) -> Result<String> {
        let mut env = self.env.clone();
        env.set_fuel(Some(
            FUEL_BASE.saturating_add(FUEL_PER_ITEM.saturating_mul(ctx.items)),
        ));
        let template = env
            .get_template(TEMPLATE_NAME)
            .map_err(|err| template_error(&self.template_source, &err))?;
        // Sized for the context up front: grown by doubling, a config of several MiB is
        // copied a dozen times and leaves the smaller buffers behind (4 + 2 + 1 + … MiB for
        // the 5.5 MiB of 5,000 backends), while the context is still alive at the
        // controller's peak. Pages of the estimate the render does not write are not touched.
        let mut out = Vec::with_capacity(output_estimate(ctx.items));
        template
            .render_captured_to(&ctx.value, &mut out)
            .map_err(|err| template_error(&self.template_source, &err))?;
        String::from_utf8(out).map_err(|e| Error::Template {
            name: self.template_source.clone(),
            message: format!("the output is not UTF-8: {e}"),
        })
    }

    /// Renders a sample with a throwaway slot memory, to catch template errors early.
    fn dry_run(&self) -> Result<()> {
        let sample = || -> edgelb_core::Result<(Snapshot, EdgeNode)> {
            let mut snapshot = Snapshot::default();
            let key = ServiceKey::new("edgelb-sample", "web")?;
            snapshot.insert_port(
                key.clone(),
                "https",
                PortSpec::new(443, ProxyProtocol::V2)
                    .with_endpoint(Endpoint::ready([192, 0, 2, 1].into(), 8443))
                    .with_endpoint(Endpoint::draining(
                        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
                        8443,
                    )),
            )?;
            snapshot.insert_port(key, "http", PortSpec::new(80, ProxyProtocol::None))?;
            Ok((
                snapshot,
                EdgeNode::new("sample").with_bind(443, "ipv6@:443"),
            ))
        };
        let (snapshot, node) = sample().map_err(|source| Error::Validation {
            object: "the renderer's sample snapshot".to_owned(),
            source,
        })?;
        let mut memory = SlotMemory::default();
        let ctx = context::build(&snapshot, &node, &self.options, &mut memory)?;
        self.render_template(&ctx).map(drop)
    }
}

impl edgelb_core::Renderer for HaproxyRenderer {
    fn render(&self, snapshot: &Snapshot, node: &EdgeNode) -> edgelb_core::Result<RenderedConfig> {
        self.render_config(snapshot, node)
            .map_err(|err| edgelb_core::Error::Render {
                node: node.name.clone(),
                message: err.to_string(),
                source: Some(Box::new(err)),
            })
    }

    /// Reads the taken port, or the config lines and section names HAProxy's message
    /// names, back to the services whose frontends and backends they are (see `blame.rs`).
    fn blame(
        &self,
        snapshot: &Snapshot,
        _node: &EdgeNode,
        config: &RenderedConfig,
        error: &edgelb_core::DeployError,
    ) -> Option<std::collections::BTreeSet<ServiceKey>> {
        blame::blame(snapshot, config, error)
    }
}

/// The minijinja environment: strict, no escaping, Jinja-style whitespace control, and a
/// loader that looks in `template_dir` first and at the built-in template second.
fn environment(template_dir: Option<PathBuf>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    match SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        Ok(syntax) => env.set_syntax(syntax),
        // The default delimiters always build; keep minijinja's defaults if that changes.
        Err(err) => tracing::warn!("minijinja syntax config: {err}"),
    }
    env.set_loader(move |name| {
        if let Some(dir) = &template_dir {
            let relative = Path::new(name);
            if !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("template name {name:?} must be a relative path without '..'"),
                ));
            }
            let path = dir.join(relative);
            match std::fs::read_to_string(&path) {
                Ok(source) => return Ok(Some(source)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        format!("cannot read {}: {err}", path.display()),
                    ));
                }
            }
        }
        Ok(match name {
            TEMPLATE_NAME | BUILTIN_TEMPLATE_NAME => Some(BUILTIN_TEMPLATE.to_owned()),
            _ => None,
        })
    });
    env
}

fn check_template_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::InvalidInput {
            what: "template directory",
            value: dir.display().to_string(),
            reason: "it does not exist or is not a directory; create it with a haproxy.cfg.j2, or drop template_dir to use the built-in template".to_owned(),
        });
    }
    let main = dir.join(TEMPLATE_NAME);
    if !main.is_file() {
        return Err(Error::InvalidInput {
            what: "template directory",
            value: dir.display().to_string(),
            reason: format!(
                "{} is missing; put your template there (it may {{% extends \"{BUILTIN_TEMPLATE_NAME}\" %}}), or drop template_dir to use the built-in template",
                main.display()
            ),
        });
    }
    Ok(())
}

/// A template error with minijinja's message, which names the template and line, and the
/// offending source line when known.
/// The bytes a config of `items` servers and backends is expected to take, with room to
/// spare (the built-in template writes about 65 bytes per server line) and room for the
/// digest line put in front of it; capped, a template may write much less.
fn output_estimate(items: u64) -> usize {
    const PER_ITEM: u64 = 96;
    const BASE: u64 = 16 * 1024;
    const CAP: u64 = 256 * 1024 * 1024;
    let bytes = BASE.saturating_add(PER_ITEM.saturating_mul(items)).min(CAP);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

fn template_error(source: &str, err: &minijinja::Error) -> Error {
    use std::error::Error as _;
    let mut message = err.to_string();
    if err.kind() == ErrorKind::OutOfFuel {
        message.push_str(&format!(
            "\n  the template did more work than a render may ({FUEL_BASE} steps plus {FUEL_PER_ITEM} per server and frontend); look for a loop that runs too long"
        ));
    }
    if let (Some(line), Some(text)) = (err.line(), err.template_source())
        && let Some(code) = text.lines().nth(line.saturating_sub(1))
    {
        message.push_str(&format!("\n  {line} | {}", code.trim_end()));
    }
    let mut cause = err.source();
    while let Some(c) = cause {
        message.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    Error::Template {
        name: source.to_owned(),
        message,
    }
}

#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod tests;
