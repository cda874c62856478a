//! The provider block: where kcore is and how to authenticate, resolved the way kctl does
//! it (kcore-client): `endpoint`, else `$KCORE_ENDPOINT`, else the local socket
//! (`$KCORE_SOCKET` or /run/kcore/kcore.sock), else `endpoint` in
//! `~/.config/kcore/config.toml`; for https, `ca_cert`, `client_cert` and `client_key`
//! (files or PEM text), else `$KCORE_CA_CERT`, `$KCORE_CLIENT_CERT`, `$KCORE_CLIENT_KEY`,
//! else the config file's.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use kcore_client::endpoint::{self, Pem};
use kcore_client::{Client, ClientError};
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{DynamicDataSource, DynamicResource, Provider, map};

use crate::schema::{block, optional};
use crate::{data, image, network, template, vm, volume};

/// The connection every resource and data source of this provider uses, set by
/// `configure`.
#[derive(Clone, Default)]
pub struct Shared(Arc<OnceLock<Client>>);

impl Shared {
    /// The client, or an error diagnostic when the provider was not configured.
    pub fn client(&self, diags: &mut tf_provider::Diagnostics) -> Option<Client> {
        let client = self.0.get().cloned();
        if client.is_none() {
            diags.root_error_short("the kcore provider is not configured");
        }
        client
    }
}

/// The `provider "kcore"` block.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub endpoint: Value<String>,
    #[serde(default)]
    pub ca_cert: Value<String>,
    #[serde(default)]
    pub client_cert: Value<String>,
    #[serde(default)]
    pub client_key: Value<String>,
}

#[derive(Default)]
pub struct KcoreProvider {
    shared: Shared,
}

fn known(v: &Value<String>) -> Option<&str> {
    match v {
        Value::Value(s) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    }
}

/// Resolves the endpoint from the provider block, then kctl's fallbacks.
pub fn resolve(config: &Config) -> Result<endpoint::Resolved, ClientError> {
    let env = endpoint::process_env;
    let config_path = endpoint::default_config_path(&env);
    resolve_in(
        config,
        &env,
        &endpoint::local_socket(&env),
        config_path.as_deref(),
    )
}

fn resolve_in(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    local: &std::path::Path,
    config_path: Option<&std::path::Path>,
) -> Result<endpoint::Resolved, ClientError> {
    let mut resolved = endpoint::resolve(known(&config.endpoint), env, local, config_path)
        .map_err(|e| match e {
            ClientError::NoEndpoint(_) => ClientError::NoEndpoint(format!(
                "no kcore endpoint: set endpoint in the provider \"kcore\" block, set \
             KCORE_ENDPOINT, or run kcored locally ({})",
                local.display()
            )),
            e => e,
        })?;
    if matches!(resolved.target, endpoint::Target::Https { .. }) {
        let tls = &mut resolved.tls;
        for (value, slot) in [
            (&config.ca_cert, &mut tls.ca_cert),
            (&config.client_cert, &mut tls.client_cert),
            (&config.client_key, &mut tls.client_key),
        ] {
            if let Some(v) = known(value) {
                *slot = Some(Pem::parse(v));
            }
        }
    }
    Ok(resolved)
}

#[async_trait]
impl Provider for KcoreProvider {
    type Config<'a> = Config;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut tf_provider::Diagnostics) -> Option<Schema> {
        let s = AttributeType::String;
        let mut key = optional(
            s.clone(),
            "PEM client key, or a file holding it (default: $KCORE_CLIENT_KEY, then client_key in ~/.config/kcore/config.toml)",
        );
        key.sensitive = true;
        Some(Schema {
            version: 1,
            block: block(
                "kcore: QEMU/KVM virtual machines without libvirt",
                vec![
                    (
                        "endpoint",
                        optional(
                            s.clone(),
                            "unix:///run/kcore/kcore.sock or https://host:9090 (default: $KCORE_ENDPOINT, the local socket, then endpoint in ~/.config/kcore/config.toml)",
                        ),
                    ),
                    (
                        "ca_cert",
                        optional(
                            s.clone(),
                            "PEM cluster CA certificate, or a file holding it (default: $KCORE_CA_CERT, then ca_cert in the config file)",
                        ),
                    ),
                    (
                        "client_cert",
                        optional(
                            s,
                            "PEM client certificate, or a file holding it (default: $KCORE_CLIENT_CERT, then client_cert in the config file)",
                        ),
                    ),
                    ("client_key", key),
                ],
                vec![],
            ),
        })
    }

    async fn configure<'a>(
        &self,
        diags: &mut tf_provider::Diagnostics,
        terraform_version: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let resolved = match resolve(&config) {
            Ok(r) => r,
            Err(e) => {
                diags.root_error("cannot configure the kcore provider", e.to_string());
                return None;
            }
        };
        tracing::info!(endpoint = %resolved.raw, terraform = %terraform_version, "connecting");
        match kcore_client::connect(resolved).await {
            Ok(client) => {
                let _ = self.shared.0.set(client);
                Some(())
            }
            Err(e) => {
                diags.root_error("cannot connect to kcore", e.to_string());
                None
            }
        }
    }

    fn get_resources(
        &self,
        _diags: &mut tf_provider::Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        let shared = &self.shared;
        Some(map! {
            "vm" => vm::VmResource(shared.clone()),
            "network" => network::NetworkResource(shared.clone()),
            "image" => image::ImageResource(shared.clone()),
            "volume" => volume::VolumeResource(shared.clone()),
            "template" => template::TemplateResource(shared.clone()),
        })
    }

    fn get_data_sources(
        &self,
        _diags: &mut tf_provider::Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        let shared = &self.shared;
        Some(map! {
            "nodes" => data::NodesData(shared.clone()),
            "vm" => data::VmData(shared.clone()),
            "images" => data::ImagesData(shared.clone()),
            "template" => template::TemplateData(shared.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_block_wins_and_takes_pem_text() {
        let config = Config {
            endpoint: Value::Value("https://kc.example:9090".into()),
            ca_cert: Value::Value("-----BEGIN CERTIFICATE-----\nMIIB\n".into()),
            client_cert: Value::Value("/etc/kcore/me.crt".into()),
            client_key: Value::Null,
        };
        let r = resolve(&config).expect("resolves");
        assert_eq!(r.raw, "https://kc.example:9090");
        assert!(matches!(r.tls.ca_cert, Some(Pem::Inline(_))));
        assert_eq!(
            r.tls.client_cert,
            Some(Pem::File("/etc/kcore/me.crt".into()))
        );
    }

    #[test]
    fn fallbacks_are_kctls() {
        let none = |_: &str| None;
        let env = |name: &str| match name {
            "KCORE_ENDPOINT" => Some("https://env.example:9090".to_string()),
            "KCORE_CA_CERT" => Some("/env/ca.crt".to_string()),
            _ => None,
        };
        let nowhere = std::path::Path::new("/nonexistent/kcore.sock");
        let r = resolve_in(&Config::default(), &env, nowhere, None).expect("env");
        assert_eq!(r.raw, "https://env.example:9090");
        assert_eq!(r.tls.ca_cert, Some(Pem::File("/env/ca.crt".into())));
        let err = resolve_in(&Config::default(), &none, nowhere, None).expect_err("nothing");
        assert_eq!(
            err.to_string(),
            "no kcore endpoint: set endpoint in the provider \"kcore\" block, set \
             KCORE_ENDPOINT, or run kcored locally (/nonexistent/kcore.sock)"
        );
    }
}
