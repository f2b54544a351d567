//! The apps of one process: a [`Gateway`] per `[[apps]]` entry (one, `default`, for a
//! single-app config), sharing the metrics, the audit events and the store (each app through
//! its own view, `store::Scopes`). The public listener picks an app by the request's `Host`,
//! the egress listener by the assertion or `X-Gateway-App`, the admin API by `?app=`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, DEFAULT_DEVELOPER_ACCOUNT};
use crate::crypto::Keyring;
use crate::events::{Events, Webhooks};
use crate::net::host::HostPort;
use crate::quota::{AccountHold, Budget};
use crate::server::errors::{ReloadError, StartError};
use crate::server::reload::{self, Report};
use crate::server::state::{Account, Gateway, Shared};
use crate::store::{self, Scopes};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::Traces;

pub struct Apps {
    /// In the config's order; never empty.
    all: Vec<Arc<Gateway>>,
    /// What they share, for the reload.
    events: Arc<Events>,
}

impl Apps {
    /// Every app of `config`, wired.
    pub fn new(config: Config, config_path: Option<PathBuf>) -> Result<Arc<Apps>, StartError> {
        let metrics = Arc::new(Metrics::new());
        // Each app's view of the one store counts its operations under its name; the
        // process's own (the budgets') under none.
        let backend = store::open_backend(&config.store, &metrics)?;
        let store = store::instrumented(Arc::clone(&backend), "", metrics.clone());
        // Audit events hash user ids with the default app's keys: one user, one hash.
        let keys = Keyring::new(
            &config.session.secret,
            config.session.previous_secret.as_ref(),
        );
        let webhooks = Webhooks::start(&config.webhooks, &metrics).map_err(StartError::Clients)?;
        let events = Arc::new(Events::new(
            &keys,
            config.server.log_user_id,
            metrics.clone(),
            webhooks,
        ));
        let names: Vec<Option<&str>> = config
            .apps
            .iter()
            .map(|a| (!a.is_default()).then_some(a.name.as_str()))
            .collect();
        let views = Scopes::new(backend, &names)
            .views
            .into_iter()
            .zip(&config.apps)
            .map(|(view, app)| store::instrumented(view, &app.name, metrics.clone()))
            .collect::<Vec<_>>();
        // One hold and one budget per developer account, for all of its apps.
        let mut accounts: HashMap<&str, Account> = HashMap::new();
        for app in &config.apps {
            let account = app.developer_account.as_str();
            accounts.entry(account).or_insert_with(|| {
                let apps: Vec<&str> = config
                    .apps
                    .iter()
                    .filter(|a| a.developer_account == account)
                    .map(|a| a.name.as_str())
                    .collect();
                // The default account's shared window keeps the name earlier releases used.
                let shared_as = (account != DEFAULT_DEVELOPER_ACCOUNT).then_some(account);
                Account {
                    hold: Arc::new(AccountHold::of_apps(&apps, &metrics)),
                    budget: config.egress.budget_per_30s.map(|limit| {
                        Budget::new(limit, shared_as, &apps, Arc::clone(&store), metrics.clone())
                    }),
                }
            });
        }
        let traces =
            Arc::new(Traces::start(&config.tracing, metrics.clone()).map_err(StartError::Clients)?);
        let shared = Shared { metrics, traces };
        let all = config
            .apps
            .iter()
            .zip(views)
            .map(|(app, view)| {
                let account = &accounts[app.developer_account.as_str()];
                let events = Arc::new(events.for_app(&app.name));
                Gateway::for_app(
                    &config,
                    app,
                    config_path.clone(),
                    view,
                    &shared,
                    account,
                    events,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Apps { all, events }))
    }

    /// One app's gateway, already wired (the demo's, the benches').
    pub fn single(gw: Arc<Gateway>) -> Arc<Apps> {
        let events = Arc::clone(&gw.events);
        Arc::new(Apps {
            all: vec![gw],
            events,
        })
    }

    pub fn all(&self) -> &[Arc<Gateway>] {
        &self.all
    }

    /// The first app: the only one of a single-app config. Process-wide settings (listeners,
    /// server, store) are the same in every app's config.
    pub fn first(&self) -> &Arc<Gateway> {
        &self.all[0]
    }

    /// Whether the config has more than one app, so that a request must say which.
    pub fn several(&self) -> bool {
        self.all.len() > 1
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Gateway>> {
        self.all.iter().find(|g| g.app.name == name)
    }

    /// The app serving the public host `host` (a `Host` header): the one whose `hosts` list
    /// it, or the only app when it lists none.
    pub fn by_host(&self, host: Option<&str>) -> Option<&Arc<Gateway>> {
        if let [only] = self.all.as_slice() {
            if only.app.hosts.is_empty() {
                return Some(only);
            }
        }
        let host = HostPort::parse(&host?.to_ascii_lowercase()).ok()?;
        self.all
            .iter()
            .find(|g| g.app.hosts.iter().any(|h| h.serves(&host)))
    }

    /// Re-reads the config file (SIGHUP), applies what can change without new listeners to
    /// every app and names what waits for a restart (`reload::diff`). A bad file, or one that
    /// adds, removes or renames an app, changes nothing; the error says why.
    pub fn reload(&self) -> Result<Report, ReloadError> {
        let first = self.first();
        let path = first
            .config_path
            .as_ref()
            .ok_or(ReloadError::NoConfigFile)?;
        let new = Config::load(path)?;
        // Each app's token client, sessions and keys are made at start: a file that adds,
        // removes or renames an app is refused whole, and the running apps keep theirs.
        let (added, removed) = reload::apps_added_and_removed(&first.config, &new);
        if !added.is_empty() || !removed.is_empty() {
            return Err(ReloadError::AppsChanged { added, removed });
        }
        let changes = reload::diff(&first.config, &new);
        if new.server.log_level != first.live().log_level {
            crate::telemetry::logging::set_level(&new.server.log_level)
                .map_err(ReloadError::LogLevel)?;
        }
        let keys_changed = changes
            .iter()
            .any(|c| c.key == "session.secret" || c.key == "session.previous_secret");
        let new_keys = keys_changed
            .then(|| Keyring::new(&new.session.secret, new.session.previous_secret.as_ref()));
        self.events
            .reconfigure(new.server.log_user_id, new_keys.as_ref());
        // One tracer for every app: `enabled` and `sample_ratio` apply from the next request.
        first.traces.apply(&new.tracing);
        for gw in &self.all {
            gw.apply(&new, &changes);
        }
        let names = self.all.iter().map(|g| g.app.name.clone()).collect();
        Ok(Report::from_changes(names, &changes))
    }

    pub fn mark_listening(&self) {
        self.all.iter().for_each(|g| g.mark_listening());
    }

    pub fn begin_shutdown(&self) {
        self.all.iter().for_each(|g| g.begin_shutdown());
    }
}

/// What `server::build` runs: every app, or one app's gateway alone.
pub trait IntoApps {
    fn into_apps(self) -> Arc<Apps>;
}

impl IntoApps for Arc<Apps> {
    fn into_apps(self) -> Arc<Apps> {
        self
    }
}

impl IntoApps for Arc<Gateway> {
    fn into_apps(self) -> Arc<Apps> {
        Apps::single(self)
    }
}

impl Gateway {
    /// The gateway of a single-app config (or the first app of several): for the benches
    /// and tools that drive one app. The server runs every app (`Apps::new`).
    pub fn new(config: Config, config_path: Option<PathBuf>) -> Result<Arc<Gateway>, StartError> {
        let apps = Apps::new(config, config_path)?;
        Ok(Arc::clone(apps.first()))
    }
}
