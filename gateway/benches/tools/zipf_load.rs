//! `spotify-gateway-bench zipf-load` (benches/quota.sh): an open-loop load at a fixed offered
//! rate. Catalogue GETs (`/v1/tracks/{id}`, ids the mock's generated catalogue answers) drawn
//! from a Zipf distribution, spread round-robin over N clients, plus `GET /v1/me` for each
//! signed-in user (one client per user, its header from a file). Arrivals are Poisson; the
//! whole sequence (times, tracks, users) follows from the seed, so every contender sees the
//! same requests. A request is sent at its time whether or not earlier ones have answered.
//!
//! Prints one line:
//! `zipf-load: requests=N ok=N failed_429=N failed_other=N catalogue=N user=N
//!  user_failed=N p50_ms=X p99_ms=Y max_lag_ms=Z statuses=200:N,429:N,...`
//! (latency over every request, failures included, a timeout counting as its timeout;
//! `max_lag_ms`: how late the generator sent its latest request, which must stay small for
//! the rate to be the offered one).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub struct Options<'a> {
    pub target: &'a str,
    pub clients: usize,
    pub tracks: usize,
    pub s: f64,
    pub duration: Duration,
    /// Catalogue requests per second, all clients together.
    pub rate: f64,
    pub users_file: Option<&'a Path>,
    /// User requests per second, all users together.
    pub user_rate: f64,
    pub user_header: &'a str,
    pub seed: u64,
    pub timeout: Duration,
}

#[derive(Clone, Copy)]
enum Call {
    Track { client: usize, rank: usize },
    User { user: usize },
}

/// Ranks 0..n drawn with P(k) ∝ 1 / (k + 1)^s, by inverting the cumulative weights.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                total += (k as f64).powf(-s);
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Poisson arrivals at `rate` per second over `duration`: exponential gaps.
fn arrivals(rng: &mut StdRng, rate: f64, duration: Duration) -> Vec<Duration> {
    let mut out = Vec::new();
    if rate <= 0.0 {
        return out;
    }
    let mut t = 0.0;
    loop {
        let u: f64 = rng.gen();
        t += -(1.0 - u).ln() / rate;
        if t >= duration.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(t));
    }
}

/// The whole run's calls, in time order.
fn schedule(o: &Options, users: usize) -> Vec<(Duration, Call)> {
    let mut rng = StdRng::seed_from_u64(o.seed);
    let zipf = Zipf::new(o.tracks, o.s);
    let mut calls: Vec<(Duration, Call)> = arrivals(&mut rng, o.rate, o.duration)
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let rank = zipf.sample(&mut rng);
            (
                t,
                Call::Track {
                    client: i % o.clients,
                    rank,
                },
            )
        })
        .collect();
    if users > 0 {
        let user_times = arrivals(&mut rng, o.user_rate, o.duration);
        for (i, t) in user_times.into_iter().enumerate() {
            calls.push((t, Call::User { user: i % users }));
        }
    }
    calls.sort_by_key(|(t, _)| *t);
    calls
}

#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Status(u16),
    Timeout,
    Error,
}

type BoxError = Box<dyn std::error::Error>;

pub async fn run(o: Options<'_>) -> Result<(), BoxError> {
    let ids = mock_spotify::generated_track_ids();
    if o.tracks == 0 || o.tracks > ids.len() {
        return Err(format!(
            "--tracks must be 1 to {} (the mock's generated tracks)",
            ids.len()
        )
        .into());
    }
    if o.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let users: Vec<String> = match o.users_file {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => Vec::new(),
    };
    let client = || {
        reqwest::Client::builder()
            .timeout(o.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
    };
    // One connection pool per client and per user, as separate apps would have.
    let clients: Vec<reqwest::Client> =
        (0..o.clients).map(|_| client()).collect::<Result<_, _>>()?;
    let user_clients: Vec<reqwest::Client> = (0..users.len())
        .map(|_| client())
        .collect::<Result<_, _>>()?;
    let target = o.target.trim_end_matches('/').to_string();
    let calls = schedule(&o, users.len());

    let start = tokio::time::Instant::now();
    let mut max_lag = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();
    for (at, call) in calls {
        tokio::time::sleep_until(start + at).await;
        max_lag = max_lag.max(start.elapsed().saturating_sub(at));
        let request = match call {
            Call::Track { client, rank } => {
                clients[client].get(format!("{target}/v1/tracks/{}", ids[rank]))
            }
            Call::User { user } => user_clients[user]
                .get(format!("{target}/v1/me"))
                .header(o.user_header, &users[user]),
        };
        let is_user = matches!(call, Call::User { .. });
        let timeout = o.timeout;
        tasks.spawn(async move {
            let t = Instant::now();
            let outcome = match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // The whole body, as a client would read it.
                    match resp.bytes().await {
                        Ok(_) => Outcome::Status(status),
                        Err(e) if e.is_timeout() => Outcome::Timeout,
                        Err(_) => Outcome::Error,
                    }
                }
                Err(e) if e.is_timeout() => Outcome::Timeout,
                Err(_) => Outcome::Error,
            };
            let took = if outcome == Outcome::Timeout {
                timeout
            } else {
                t.elapsed()
            };
            (is_user, outcome, took)
        });
    }
    let mut times = Vec::new();
    let (mut ok, mut failed_429, mut failed_other) = (0u64, 0u64, 0u64);
    let (mut catalogue, mut user_calls, mut user_failed) = (0u64, 0u64, 0u64);
    let mut statuses = BTreeMap::<String, u64>::new();
    while let Some(done) = tasks.join_next().await {
        let (is_user, outcome, took) = done?;
        times.push(took);
        if is_user {
            user_calls += 1;
        } else {
            catalogue += 1;
        }
        let key = match outcome {
            Outcome::Status(s) => s.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Error => "error".into(),
        };
        *statuses.entry(key).or_default() += 1;
        match outcome {
            Outcome::Status(s) if (200..300).contains(&s) => ok += 1,
            Outcome::Status(429) => failed_429 += 1,
            _ => failed_other += 1,
        }
        if is_user && !matches!(outcome, Outcome::Status(s) if (200..300).contains(&s)) {
            user_failed += 1;
        }
    }
    times.sort();
    let pct = |p: f64| -> f64 {
        if times.is_empty() {
            return 0.0;
        }
        let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1000.0
    };
    let statuses: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    println!(
        "zipf-load: requests={} ok={ok} failed_429={failed_429} failed_other={failed_other} \
         catalogue={catalogue} user={user_calls} user_failed={user_failed} p50_ms={:.3} \
         p99_ms={:.3} max_lag_ms={:.3} statuses={}",
        times.len(),
        pct(0.50),
        pct(0.99),
        max_lag.as_secs_f64() * 1000.0,
        statuses.join(",")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_and_the_schedule_is_the_seeds() {
        let z = Zipf::new(1000, 1.1);
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        // P(rank 1) = 1 / H(1000, 1.1) ≈ 0.18.
        assert!((16_000..20_000).contains(&counts[0]), "{}", counts[0]);
        assert!(counts[0] > counts[1] && counts[1] > counts[9]);
        let o = Options {
            target: "",
            clients: 50,
            tracks: 1000,
            s: 1.1,
            duration: Duration::from_secs(10),
            rate: 16.0,
            users_file: None,
            user_rate: 4.0,
            user_header: "X-Gateway-User",
            seed: 1,
            timeout: Duration::from_secs(1),
        };
        let a = schedule(&o, 20);
        let b = schedule(&o, 20);
        assert_eq!(a.len(), b.len());
        assert!((150..250).contains(&a.len()), "{}", a.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.0 == y.0));
    }
}
