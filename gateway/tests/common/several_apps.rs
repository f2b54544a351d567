//! A gateway serving several Spotify apps (`[[apps]]`) in front of one mock Spotify that
//! knows each client id: [`three_apps`] turns the template into three apps on three loopback
//! hosts of the same port, and registers their clients at the mock.

use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

use super::{MockConfig, StackBuilder};

/// One app of [`three_apps`].
pub struct TestApp {
    pub name: &'static str,
    /// Its public host: a loopback address of its own, on the gateway's public port.
    pub host: &'static str,
    pub client_id: &'static str,
    /// `None`: a PKCE public client.
    pub secret: Option<&'static str>,
    pub account: &'static str,
}

/// PKCE, no secret; account `acme`.
pub const RADIO: TestApp = TestApp {
    name: "radio",
    host: "127.0.0.1",
    client_id: "radio-client-id",
    secret: None,
    account: "acme",
};

/// The code flow with a secret; account `acme`, as `RADIO`.
pub const CHARTS: TestApp = TestApp {
    name: "charts",
    host: "127.0.0.2",
    client_id: "charts-client-id",
    secret: Some("charts-client-secret-do-not-log"),
    account: "acme",
};

/// The code flow with a secret; another developer account.
pub const SOLO: TestApp = TestApp {
    name: "solo",
    host: "127.0.0.3",
    client_id: "solo-client-id",
    secret: Some("solo-client-secret-do-not-log"),
    account: "solo-dev",
};

pub const APPS: [TestApp; 3] = [RADIO, CHARTS, SOLO];

impl TestApp {
    /// `http://HOST:PORT` of the gateway's public listener for this app.
    pub fn public_url(&self, public_port: u16) -> String {
        format!("http://{}:{public_port}", self.host)
    }

    fn env_name(&self) -> String {
        format!("TEST_{}_SECRET", self.name.to_ascii_uppercase())
    }
}

/// The stack with [`APPS`]: the template's `[spotify]` and `[upstream]` become three
/// `[[apps]]` (all behind the template's app), the public listener takes the three apps'
/// loopback addresses, and the mock knows the three clients (its own main client stays
/// unused).
pub fn three_apps(builder: StackBuilder) -> StackBuilder {
    let mut builder = builder.mock_config(register_clients).edit(into_apps);
    for app in &APPS {
        if let Some(secret) = app.secret {
            builder = builder.env(&app.env_name(), secret);
        }
    }
    builder
}

/// The apps' client secrets as the gateway's environment has them (`three_apps` gives them to
/// the first gateway; a replica needs them too).
pub fn app_secrets_env() -> Vec<(String, String)> {
    APPS.iter()
        .filter_map(|a| a.secret.map(|s| (a.env_name(), s.to_string())))
        .collect()
}

/// The three clients at the mock, each with its redirect URI on the gateway's port.
fn register_clients(mock: &mut MockConfig) {
    let port = mock
        .redirect_uris
        .first()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|rest| rest.split('/').next())
        .expect("the template's redirect URI")
        .to_string();
    for app in &APPS {
        mock.other_clients.push(mock_spotify::MockClient {
            client_id: app.client_id.into(),
            client_secret: app
                .secret
                .unwrap_or("a-secret-the-pkce-app-never-sends")
                .into(),
            redirect_uris: vec![format!("http://{}:{port}/auth/callback", app.host)],
            app_name: format!("{} (test)", app.name),
            mode: mock_spotify::AppMode::Development,
            registered: vec!["alice".into(), "bob".into()],
            developer_account: app.account.into(),
        });
    }
}

/// `[spotify]` and `[upstream]` into one `[[apps]]` entry per app.
fn into_apps(doc: &mut DocumentMut) {
    let spotify = take_table(doc, "spotify");
    let upstream = take_table(doc, "upstream");
    let public = doc["listen"]["public"]
        .as_str()
        .expect("listen.public")
        .to_string();
    let port = public.rsplit(':').next().expect("port").to_string();
    // Each app's loopback address, and no other (`listen.public` as a list).
    let public = Array::from_iter(APPS.iter().map(|a| format!("{}:{port}", a.host)));
    doc["listen"]["public"] = value(public);
    let mut apps = ArrayOfTables::new();
    for app in &APPS {
        let mut s = spotify.clone();
        s["client_id"] = value(app.client_id);
        s["redirect_uri"] = value(format!("http://{}:{port}/auth/callback", app.host));
        match app.secret {
            Some(_) => {
                s["client_secret_env"] = value(app.env_name());
                s["flow"] = value("authorization_code");
            }
            None => {
                s.remove("client_secret_env");
                s["flow"] = value("pkce");
            }
        }
        let mut t = Table::new();
        t["name"] = value(app.name);
        t["hosts"] = value(Array::from_iter([app.host]));
        t["developer_account"] = value(app.account);
        t["spotify"] = Item::Table(s);
        t["upstream"] = Item::Table(upstream.clone());
        apps.push(t);
    }
    doc["apps"] = Item::ArrayOfTables(apps);
}

/// Removes the table `name` and returns its keys in a table of its own: a table moved
/// whole keeps its place in the file, and would be written there again.
pub fn take_table(doc: &mut DocumentMut, name: &str) -> Table {
    let old = doc
        .remove(name)
        .and_then(|i| i.into_table().ok())
        .unwrap_or_else(|| panic!("the config has no [{name}]"));
    let mut fresh = Table::new();
    for (key, item) in old.iter() {
        fresh[key] = item.clone();
    }
    fresh
}
