//! The apps: `[[apps]]`, or the one app named `default` that `[spotify]`, `[upstream]` and
//! `[access]` describe (the config before `[[apps]]`, unchanged), and the checks between apps
//! (names, hosts, redirect URIs), each naming the keys.

use crate::config::file::*;
use crate::config::values::Validator;
use crate::config::*;
use crate::net::host::HostPort;

/// Most characters of an app's name: a metric label and a cookie name's suffix.
const MAX_NAME_CHARS: usize = 32;

impl Validator<'_> {
    /// Every app, in the file's order, checked one by one and against each other.
    pub(super) fn apps(
        &mut self,
        spotify: Option<FileSpotify>,
        upstream: Option<FileUpstream>,
        access: Option<FileAccess>,
        apps: Vec<FileApp>,
    ) -> Option<Vec<AppConfig>> {
        if apps.is_empty() {
            let Some(spotify) = spotify else {
                self.issue(
                    "spotify",
                    "missing: describe the Spotify app in [spotify], or several in [[apps]]",
                );
                return None;
            };
            return Some(vec![self.app(FileApp {
                name: DEFAULT_APP.into(),
                spotify,
                hosts: Vec::new(),
                upstream,
                access: access.unwrap_or_default(),
                developer_account: None,
            })?]);
        }
        for (present, table) in [
            (spotify.is_some(), "spotify"),
            (upstream.is_some(), "upstream"),
            (access.is_some(), "access"),
        ] {
            if present {
                self.issue(
                    table,
                    format!(
                        "[{table}] and [[apps]] cannot both be set: move [{table}] into the \
                         [[apps]] entry it belongs to (name it \"default\" to keep the \
                         sessions of a single-app gateway)"
                    ),
                );
            }
        }
        let several = apps.len() > 1;
        let mut valid = Vec::new();
        for (i, app) in apps.into_iter().enumerate() {
            self.app_scope = Some(format!("apps[{i}]"));
            if several && app.hosts.is_empty() {
                self.issue(
                    &format!("apps[{i}].hosts"),
                    "with several apps each app names the public hosts it serves: the Host of \
                     a request picks its app",
                );
            }
            let app = self.app(app);
            self.app_scope = None;
            valid.push(app);
        }
        let valid: Vec<AppConfig> = valid.into_iter().collect::<Option<_>>()?;
        self.between_apps(&valid);
        Some(valid)
    }

    /// One app; its tables' keys are named under `apps[N]` (`Validator::app_scope`).
    fn app(&mut self, app: FileApp) -> Option<AppConfig> {
        let FileApp {
            name,
            spotify,
            hosts,
            upstream,
            access,
            developer_account,
        } = app;
        let scope = self.app_scope.clone();
        let key = |k: &str| match &scope {
            Some(s) => format!("{s}.{k}"),
            None => k.to_string(),
        };
        if !is_label(&name) {
            self.issue(
                &key("name"),
                format!(
                    "{name:?} is not an app name: 1 to {MAX_NAME_CHARS} of a-z, 0-9, _ and -, \
                     such as \"radio\" (it labels metrics and names the app's cookie)"
                ),
            );
        }
        let developer_account =
            developer_account.unwrap_or_else(|| DEFAULT_DEVELOPER_ACCOUNT.into());
        if !is_label(&developer_account) {
            self.issue(
                &key("developer_account"),
                format!(
                    "{developer_account:?} is not a label: 1 to {MAX_NAME_CHARS} of a-z, 0-9, \
                     _ and -"
                ),
            );
        }
        let mut parsed_hosts = Vec::new();
        for host in &hosts {
            match HostPort::parse(&host.to_ascii_lowercase()) {
                Ok(h) => parsed_hosts.push(AppHost(h)),
                Err(why) => self.url_issue(
                    &key("hosts"),
                    host,
                    format!("{why}; write a host name, such as \"radio.example.com\""),
                ),
            }
        }
        let spotify = self.spotify(spotify);
        let upstream = upstream.and_then(|u| self.upstream(u));
        let access = self.access(access);
        let spotify = spotify?;
        if !parsed_hosts.is_empty() {
            if let Some(callback) = redirect_host(&spotify.redirect_uri) {
                if !parsed_hosts.iter().any(|h| h.serves(&callback)) {
                    self.issue(
                        "spotify.redirect_uri",
                        format!(
                            "its host {callback} is not one of {}: Spotify would send the \
                             user back to a host this app does not serve",
                            key("hosts")
                        ),
                    );
                }
            }
        }
        Some(AppConfig {
            name,
            spotify,
            hosts: parsed_hosts,
            upstream,
            access: access?,
            developer_account,
        })
    }

    /// What no two apps may share: a name, a host, a redirect URI.
    fn between_apps(&mut self, apps: &[AppConfig]) {
        for (j, b) in apps.iter().enumerate() {
            for (i, a) in apps[..j].iter().enumerate() {
                if a.name == b.name {
                    self.issue(
                        &format!("apps[{j}].name"),
                        format!("{:?} is also the name of apps[{i}]", b.name),
                    );
                }
                for host in &b.hosts {
                    if a.hosts.iter().any(|h| overlaps(h, host)) {
                        self.issue(
                            &format!("apps[{j}].hosts"),
                            format!(
                                "{} is served by apps[{i}] ({:?}) too: a host picks one app",
                                host.0, a.name
                            ),
                        );
                    }
                }
                if a.spotify.redirect_uri == b.spotify.redirect_uri {
                    self.issue(
                        &format!("apps[{j}].spotify.redirect_uri"),
                        format!(
                            "is also the redirect URI of apps[{i}] ({:?}): each app's callback \
                             is on its own host",
                            a.name
                        ),
                    );
                }
            }
        }
    }
}

/// A label: metrics, cookie names and store keys take it as it is.
fn is_label(s: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The redirect URI's `host[:port]`, as a browser's `Host` header names it.
fn redirect_host(url: &Url) -> Option<HostPort> {
    let host = match url.host()? {
        url::Host::Ipv6(ip) => format!("[{ip}]"),
        other => other.to_string(),
    };
    let raw = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    HostPort::parse(&raw).ok()
}

/// Whether two host entries could match one request.
fn overlaps(a: &AppHost, b: &AppHost) -> bool {
    a.0.host == b.0.host && (a.0.port.is_none() || b.0.port.is_none() || a.0.port == b.0.port)
}
