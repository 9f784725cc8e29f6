//! Command-line syntax only; `config.rs` validates and layers it over the config file.
//! Doc comments here are the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::report::Format;
use crate::verdict::Verdict;

#[derive(Debug, Parser)]
#[command(
    name = "blockprobe",
    version,
    about = "Measure Internet censorship: what is blocked, where and how",
    long_about = "blockprobe resolves each target through every vantage resolver and through \
control resolvers, compares the answers, and classifies every (target, resolver) pair as \
reachable, blocked, throttled, down or inconclusive, with the layer and the exact reason.",
    after_help = "Run `blockprobe scan --help` for the scan options and examples."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe targets through vantage resolvers and classify what is blocked.
    Scan(Box<ScanArgs>),
    /// Run a mock censored network on loopback (for smoke tests and trying blockprobe offline).
    Mocknet(MocknetArgs),
    /// Run the echo server for `echo://` targets, outside the censored network.
    Echo(EchoArgs),
    /// Is this network in a whitelist regime (only allow-listed destinations work)? The scan's
    /// regime check on its own; with --discover, which destinations the whitelist lets through.
    Regime(Box<RegimeArgs>),
    /// Verdict timeline per target and resolver, from the measurement store.
    History(HistoryArgs),
    /// What changed between two stored runs: became blocked, became reachable, changed reason.
    Diff(DiffArgs),
    /// Stored records as CSV or JSONL, for analysis tools (DuckDB, ClickHouse, pandas).
    Export(ExportArgs),
    /// One self-contained HTML page of a report file or of the store: a target × resolver
    /// grid coloured by verdict, the breakdown by reason, and (from the store) a timeline per
    /// target across runs and a trend chart.
    Report(ReportArgs),
    /// Delete stored runs older than an age, with their records (retention for cron).
    Prune(PruneArgs),
    /// Does a saved page match a block-page fingerprint? FILE is an HTML page or a raw HTTP
    /// response with its headers (`-` for stdin). Exit 0 when it matches, 1 when not.
    #[command(after_help = "Examples:
  curl -si http://blocked.example/ | blockprobe blockpage -
  blockprobe blockpage --url http://warning.rt.ru/ stub.html
  blockprobe blockpage --list | grep ':RU'")]
    Blockpage(BlockpageArgs),
    /// List the bundled probe suites, or the targets of one suite.
    Suites {
        /// A suite name or PATH.toml: print its targets with their category and note.
        #[arg(value_name = "NAME|PATH")]
        suite: Option<String>,
    },
    /// Print a man page or shell completions, rendered from this command line.
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

#[derive(Debug, Args)]
pub struct BlockpageArgs {
    /// A saved page or raw HTTP response; `-` reads standard input.
    #[arg(value_name = "FILE", required_unless_present = "list")]
    pub file: Option<PathBuf>,
    /// The URL the page came from (host fingerprints look at it) [default: http://unknown.invalid/].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// List every shipped fingerprint (id, country, where, source) instead.
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Man pages (roff): the top page on standard output (`blockprobe generate man >
    /// blockprobe.1`), or with --dir a page for every subcommand (blockprobe-scan.1, …).
    Man {
        /// Write blockprobe.1 and one blockprobe-SUBCOMMAND.1 per subcommand into DIR.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Completions for SHELL on standard output (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const MOCKNET_EXAMPLES: &str = "\
Examples:
  # One-command smoke test: start the network, scan it (with and without the control proxy),
  # compare with the scenario's expectations. Bundled scenarios: `blockprobe mocknet --list`
  blockprobe mocknet --scenario russia --check

  # Every target of the WhatsApp suite, reachable, at its real names and ports
  blockprobe mocknet --suite whatsapp --check

  # Keep it running and scan it yourself with the printed arguments (a scenario file works too)
  blockprobe mocknet --scenario probes/scenarios/russia.toml --ready-file /tmp/bp-ready.json &
  blockprobe $(jq -r '.scan_args | join(\" \")' /tmp/bp-ready.json)

The ready line (stdout, and --ready-file) is JSON with every bound address and `scan_args`.";

/// `blockprobe echo`: the server side of `echo://HOST:PORT` targets.
#[derive(Debug, Args)]
#[command(after_help = ECHO_HELP)]
pub struct EchoArgs {
    /// Address to listen on, UDP and TCP on the same port.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:7007")]
    pub listen: std::net::SocketAddr,

    /// Datagrams answered per source address and second (a burst of as many is allowed).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub packets_per_source: u32,

    /// Bytes answered per source address and second.
    #[arg(long, value_name = "SIZE", default_value = "256KiB", value_parser = crate::parse::parse_size)]
    pub bytes_per_source: u64,

    /// Also write the bound address (JSON) to PATH once listening.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

const ECHO_HELP: &str = "\
Run it on a host outside the censored network (a VPS), then scan from inside:
  blockprobe echo --listen 0.0.0.0:7007              # outside
  blockprobe scan echo://YOUR.VPS.EXAMPLE:7007       # inside
The scan sends datagrams shaped like the first packets of WireGuard, OpenVPN, QUIC and STUN,
each with a random datagram of the same size, and reports shapes that die while their random
twins come back (blocked / udp.signature): protocol-signature DPI, found without credentials.
`media://YOUR.VPS.EXAMPLE:7007` streams a call (STUN, then RTP at 50 packets/s for 10 s) and a
random stream of the same sizes and rate: calls throttled, cut or blocked (docs/media.md).

Safe on the public internet: replies go only to the sender, are never larger than the
request (no amplification), and stay within a per-source rate cap; memory and TCP
connections are bounded (256 connections, 1 MiB and 30 s each).";

#[derive(Debug, Args)]
#[command(after_help = MOCKNET_EXAMPLES)]
pub struct MocknetArgs {
    /// A bundled scenario by name (russia, russia-apps, all, controls, quic; see --list) or a
    /// scenario file (PATH.toml, format in docs/mocknet.md).
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: Option<String>,

    /// List the bundled scenarios and exit.
    #[arg(long, conflicts_with_all = ["scenario", "suites", "check", "ready_file"])]
    pub list: bool,

    /// Serve every target of this suite (bundled name or PATH.toml) at its real name, address
    /// and port, uncensored; with --scenario, added to the scenario's. Repeatable.
    #[arg(long = "suite", value_name = "NAME|PATH")]
    pub suites: Vec<String>,

    /// Also write the ready line (JSON) to PATH once every listener is bound.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Run the scan in-process, compare every result with the scenario, print each
    /// mismatch, and exit 1 on any.
    #[arg(long)]
    pub check: bool,

    /// Step timeout put in the scan arguments (the mock's silent behaviours last this long).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::parse::parse_duration)]
    pub timeout: Duration,

    /// Serve `quic://` targets from this HTTP/3 server (a third-party origin, e.g. aioquic or
    /// nginx with QUIC) instead of the built-in one, behind the same UDP censor. Its
    /// certificate must be valid for every target name and the decoy SNI.
    #[arg(long, value_name = "IP:PORT")]
    pub quic_origin: Option<std::net::SocketAddr>,

    /// The CA (PEM) of --quic-origin's certificate, added to the scan's trusted roots.
    #[arg(long, value_name = "FILE", requires = "quic_origin")]
    pub quic_origin_ca: Option<PathBuf>,
}

const SCAN_EXAMPLES: &str = "\
Examples:
  # Is WhatsApp blocked here, and how? (web, media and chat endpoints; see `blockprobe suites`)
  blockprobe scan --suite whatsapp

  # Is WhatsApp resolvable through the ISP's resolver? Compare with the default DoH controls:
  blockprobe scan whatsapp.com web.whatsapp.com --resolver isp=udp://192.0.2.53

  # A Citizen Lab test list through two vantages, as CSV:
  blockprobe scan -i global.csv --resolver isp=system --resolver dot=tls://1.1.1.1#one.one.one.one -o out.csv

  # With a control path outside the censored network (tells blocked from down, and throttling)
  blockprobe scan t.me youtube.com --control-proxy socks5://127.0.0.1:1080

  # One probe of a fleet: label it, learn its public IP, name its network (free offline
  # files: DB-IP \"IP to ASN Lite\" / \"IP to Country Lite\", IPinfo Lite, MaxMind GeoLite2)
  blockprobe scan --suite whatsapp --vantage msk-beeline-1 --public-ip-stun stun.example.nl:3478 \\
    --asn-db dbip-asn-lite.mmdb --asn-db dbip-country-lite.mmdb --store postgres://probe@db.example/bp

  # CI smoke test: fail when anything is blocked or throttled
  blockprobe scan -i targets.txt --fail-on blocked,throttled --quiet

  # Try it offline against the bundled mock censored network
  blockprobe mocknet --scenario russia --check

Resolver SPEC forms: system | udp://IP[:PORT] | tcp://IP[:PORT] | tls://IP[:PORT]#NAME | \
https://HOST[:PORT]/PATH | IP[:PORT] (udp).
Exit status: 0 scan completed, 1 a --fail-on verdict was seen, 2 usage or input error, \
75 the store is locked by another run, 130 interrupted.";

#[derive(Debug, Default, Args)]
#[command(after_help = SCAN_EXAMPLES, args_override_self = true)]
pub struct ScanArgs {
    /// Targets: a domain (whatsapp.com), a URL (https://youtube.com/x), an endpoint (host:port,
    /// tcp://host:port), a STUN server (stun://host:port), HTTP/3 (quic://host/path), a VPN
    /// server (openvpn://host:port?proto=udp|tcp, wireguard://host:port?public_key=…, a
    /// Shadowsocks ss:// URI), a Tor relay's OR port (tor://host:port), an obfs4 bridge
    /// (obfs4://host:port?cert=…&iat-mode=0, or its bridge line in a file) or your echo server
    /// abroad (echo://host:port, see `blockprobe echo --help`; media://host:port streams a
    /// call's RTP against a random stream for 10 s: are calls throttled?).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Read targets from FILE: one per line (`#` comments) or a Citizen Lab test-list CSV
    /// (header with a `url` column). `-` reads standard input. Repeatable.
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub inputs: Vec<String>,

    /// Probe a suite: a bundled one by name (see `blockprobe suites`) or a suite file
    /// (PATH.toml, format in docs/suites.md). Repeatable; combines with TARGETs and -i.
    #[arg(long = "suite", value_name = "NAME|PATH")]
    pub suites: Vec<String>,

    /// A vantage resolver, NAME=SPEC (repeatable). Default: system=system.
    #[arg(long = "resolver", value_name = "NAME=SPEC")]
    pub resolvers: Vec<String>,

    /// A control resolver, NAME=SPEC (repeatable); replaces the default controls
    /// (Cloudflare, Google and Quad9 over DoH, addressed by IP).
    #[arg(long = "control-resolver", value_name = "NAME=SPEC")]
    pub control_resolvers: Vec<String>,

    /// SOCKS5 proxy outside the censored network, socks5://IP:PORT: the control path fetches
    /// every target through it (names resolved by the proxy) to tell `blocked` from `down`.
    #[arg(long, value_name = "URL")]
    pub control_proxy: Option<String>,

    /// Extra trusted CA certificates (PEM) for DoT, DoH and TLS probes, added to the webpki roots.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// Time limit for each step, e.g. 4s or 500ms [default: 4s].
    #[arg(long, value_name = "DURATION", value_parser = crate::parse::parse_duration)]
    pub timeout: Option<Duration>,

    /// Jobs in flight at once [default: 100].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Fetches through --control-proxy in flight at once, whatever --concurrency is: a proxy
    /// pushed past its capacity times out, and a timing-out control path decides nothing
    /// [default: 32].
    #[arg(long, value_name = "N")]
    pub control_concurrency: Option<usize>,

    /// Probe steps to run, comma-separated [default: dns,tcp,tls,http]. Later steps imply
    /// earlier ones (http runs over tcp, and tls for https); `--probes dns` is DNS only;
    /// `quic` adds every HTTPS target's HTTP/3 twin (`quic://…`, its own record).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub probes: Option<Vec<String>>,

    /// SNI for the decoy handshake tried on the same address when the target's SNI fails
    /// [default: example.com].
    #[arg(long, value_name = "NAME")]
    pub decoy_sni: Option<String>,

    /// Plain-HTTP URL fetched through each Shadowsocks (ss://) server's tunnel to prove it
    /// works; any HTTP answer counts [default: http://www.gstatic.com/generate_204].
    #[arg(long, value_name = "URL")]
    pub tunnel_check: Option<String>,

    /// Redirects followed at most [default: 10].
    #[arg(long, value_name = "N")]
    pub max_redirects: Option<u32>,

    /// Body bytes read at most per response, e.g. 1MiB or 256k [default: 1MiB].
    #[arg(long, value_name = "SIZE", value_parser = crate::parse::parse_size)]
    pub max_body: Option<u64>,

    /// No progress for this long after some bytes arrived is a stall [default: 3s].
    #[arg(long, value_name = "DURATION", value_parser = crate::parse::parse_duration)]
    pub stall_timeout: Option<Duration>,

    /// Run the connection steps N times on fresh connections; the majority outcome is
    /// reported, with every try in the evidence [default: 1].
    #[arg(long, value_name = "N")]
    pub repeat: Option<u32>,

    /// Throttled only below this rate, bits/s, e.g. 2M [default: 2M]...
    #[arg(long, value_name = "RATE", value_parser = crate::parse::parse_rate)]
    pub throttle_floor: Option<f64>,

    /// ...and below this fraction of the baseline's rate: the control path's, else the best
    /// in-run reference's (--reference) [default: 0.25].
    #[arg(long, value_name = "RATIO")]
    pub throttle_ratio: Option<f64>,

    /// Report format [default: from the output file's extension; on standard output, table on a
    /// terminal (one readable line per result, coloured unless NO_COLOR), else jsonl].
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Write the report to PATH instead of standard output.
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Exit with status 1 when any result has one of these verdicts (e.g. blocked,throttled).
    #[arg(long, value_name = "VERDICT,...", value_delimiter = ',')]
    pub fail_on: Option<Vec<Verdict>>,

    /// TOML file with the same settings; flags override it (see docs/config.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// No progress bar and no summary table.
    #[arg(short, long)]
    pub quiet: bool,

    /// Treat a malformed target line as a fatal error instead of skipping it.
    #[arg(long)]
    pub strict: bool,

    /// Canary names every vantage resolver should resolve; a resolver that fails all those the
    /// control resolvers resolve makes its failures inconclusive (canaries no control resolves
    /// say nothing) [default: example.com,iana.org,wikipedia.org].
    #[arg(long = "canary", value_name = "NAME,...", value_delimiter = ',')]
    pub canaries: Option<Vec<String>>,

    /// The network-regime check at the start of the run (is this a whitelist shutdown, where
    /// only allow-listed destinations work?): `auto` runs it when canaries are on, `on`
    /// always, `off` never [default: auto]. See docs/regime.md.
    #[arg(long, value_name = "auto|on|off")]
    pub regime_check: Option<String>,

    /// Allow-list candidates for the regime check: domestic services a whitelist keeps open
    /// [default: www.gosuslugi.ru,vk.com,ya.ru,max.ru].
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub allowlisted: Option<Vec<String>>,

    /// Ordinary foreign sites for the regime check [default:
    /// www.wikipedia.org,www.google.com,www.cloudflare.com].
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub foreign_references: Option<Vec<String>>,

    /// After the first UDP responses, keep listening this long for a second, different
    /// (injected) response to the same datagram; 0 disables [default: 250ms].
    #[arg(long, value_name = "DURATION", value_parser = crate::parse::parse_duration)]
    pub injection_window: Option<Duration>,

    /// At most this many DNS lookups' queries per second to each resolver (vantage and
    /// control; a lookup is A + AAAA = 2 queries; retransmissions of lost UDP queries come on
    /// top, at a third of --timeout); 0 = unlimited [default: 0].
    #[arg(long, value_name = "QPS")]
    pub rate: Option<f64>,

    /// Without --control-proxy: a STUN server (HOST[:PORT]) expected to answer from here. A
    /// stun:// target that gets no answer while it does is blocked (udp.timeout/udp.invalid)
    /// instead of inconclusive. Asked once per run and resolver.
    #[arg(long, value_name = "HOST:PORT")]
    pub stun_reference: Option<String>,

    /// Your echo server outside the censored network (`blockprobe echo` there), HOST:PORT: the
    /// scan adds echo://HOST:PORT (is UDP dropped by protocol signature?) and media://HOST:PORT
    /// (are calls throttled or cut? 10 s of a call's RTP against a random stream).
    #[arg(long, value_name = "HOST:PORT")]
    pub echo_server: Option<String>,

    /// Without a working control path: an http(s) URL fetched once per run and resolver as
    /// the baseline for throttling and freezes — best a large object (>= 64 KiB, well past the
    /// ~16 KiB freeze) on a domestic server the censor leaves alone. Repeatable; suites may
    /// name their own. Without one, the run's own best transfers are the baseline.
    #[arg(long = "reference", value_name = "URL")]
    pub references: Vec<String>,

    /// Connect to TO whenever a probe would connect to FROM (IP:PORT=IP:PORT, repeatable; TCP
    /// and UDP); reports keep showing FROM. A testing aid: `blockprobe mocknet --suite` maps a
    /// suite's real addresses and ports to loopback with it.
    #[arg(long = "connect-to", value_name = "FROM=TO", value_parser = crate::probe::tcp::parse_remap)]
    pub connect_to: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,

    /// Record the run in a measurement store: sqlite:PATH or postgres://USER@HOST/DB
    /// (see docs/cron.md). Also read from BLOCKPROBE_STORE.
    #[arg(long, value_name = "URL", env = "BLOCKPROBE_STORE")]
    pub store: Option<String>,

    /// Continue an interrupted run of the store, measuring only the (target, resolver) pairs
    /// it has not recorded. Give the same targets and resolvers as the first time.
    #[arg(
        long,
        value_name = "RUN_ID",
        requires = "store",
        conflicts_with = "run_id"
    )]
    pub resume: Option<String>,

    /// When another run on this host holds the store's lock, wait for it (default: exit with
    /// status 75 at once).
    #[arg(long)]
    pub lock_wait: bool,

    /// Append to the -o file instead of replacing it (JSONL only; CSV and JSON files are
    /// replaced atomically when the run ends).
    #[arg(long, requires = "output")]
    pub append: bool,

    /// Identifier written in every record [default: generated from time and randomness].
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// Where this probe measures from, written in every record and the store (e.g.
    /// msk-beeline-1): a fleet's records are told apart by it [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub vantage: Option<String>,

    /// Learn this probe's public IP address from a STUN server (HOST[:PORT], one Binding
    /// Request at the start of the run) and write it in every record (`public_ip`). Nothing is
    /// asked unless this is given.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "public_ip")]
    pub public_ip_stun: Option<String>,

    /// This probe's public IP address, when known (instead of asking a STUN server): written
    /// in every record (`public_ip`) and looked up in --asn-db.
    #[arg(long, value_name = "ADDR")]
    pub public_ip: Option<std::net::IpAddr>,

    /// An offline IP database in MaxMind DB format (repeatable: e.g. an ASN file and a country
    /// file): the public IP's ASN, network name and country go in every record (`asn`,
    /// `as_org`, `country`). DB-IP Lite, IPinfo Lite and MaxMind GeoLite2 files work. Needs
    /// --public-ip-stun or --public-ip; nothing is looked up on the network.
    #[arg(long, value_name = "FILE")]
    pub asn_db: Vec<PathBuf>,
}

const REGIME_EXAMPLES: &str = "\
Examples:
  # Which regime is this network in? (open, whitelist by address / address and SNI / SNI, offline)
  blockprobe regime

  # From a cron job: alert when the region goes into a whitelist shutdown
  blockprobe regime --quiet --fail-on whitelist,offline || notify-send 'whitelist regime'

  # During a whitelist: which of these destinations get through? A dated list to publish
  blockprobe regime --discover -i ru-services.txt -o allowlist-$(date +%F).txt

Each candidate and reference is resolved through the (first) --resolver and probed with TCP
and TLS on port 443. A whitelist's signature: unlisted destinations connect, then their
ClientHello gets no answer, while allow-listed ones work. See docs/regime.md.
Exit status: 0 done, 1 the regime is one of --fail-on, 2 usage or input error, 130 interrupted.";

/// `blockprobe regime`: the regime check on its own, or allow-list discovery.
#[derive(Debug, Args)]
#[command(after_help = REGIME_EXAMPLES, args_override_self = true)]
pub struct RegimeArgs {
    /// With --discover: names (or URLs, endpoints) whose (SNI, address) pairs to test.
    #[arg(value_name = "NAME", requires = "discover")]
    pub names: Vec<String>,

    /// With --discover: read names from FILE (one per line, or a Citizen Lab test-list CSV);
    /// `-` reads standard input. Repeatable.
    #[arg(
        short = 'i',
        long = "input",
        value_name = "FILE",
        requires = "discover"
    )]
    pub inputs: Vec<String>,

    /// Allow-list discovery: after the check, probe every name (TCP + TLS with its own SNI to
    /// each of its IPv4 addresses, at most 4) and write a dated list of the (name, address)
    /// pairs that got through, the others as `#` comments. Meant for a whitelist regime.
    #[arg(long)]
    pub discover: bool,

    /// The resolver the check resolves its names through, NAME=SPEC (SPEC as for `scan`); the
    /// first one given is used — from a config file's `[resolvers]` table, the first by name
    /// [default: system=system].
    #[arg(long = "resolver", value_name = "NAME=SPEC")]
    pub resolvers: Vec<String>,

    /// Allow-list candidates: domestic services a whitelist keeps open
    /// [default: www.gosuslugi.ru,vk.com,ya.ru,max.ru].
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub allowlisted: Option<Vec<String>>,

    /// Ordinary foreign sites [default: www.wikipedia.org,www.google.com,www.cloudflare.com].
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub foreign_references: Option<Vec<String>>,

    /// Extra trusted CA certificates (PEM), added to the webpki roots.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// Time limit for each step (DNS, TCP, TLS) [default: 4s].
    #[arg(long, value_name = "DURATION", value_parser = crate::parse::parse_duration)]
    pub timeout: Option<Duration>,

    /// With --discover: names probed at once [default: 100].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Connect to TO whenever a probe would connect to FROM (IP:PORT=IP:PORT, repeatable), as
    /// for `scan`.
    #[arg(long = "connect-to", value_name = "FROM=TO", value_parser = crate::probe::tcp::parse_remap)]
    pub connect_to: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,

    /// A scan's TOML settings file (docs/config.md): its resolvers, CA file, timeout,
    /// connect-to, allow-list candidates and foreign references apply; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format: `text` for people (and, with --discover, a list to publish), `json`
    /// (the check) or `jsonl` (with --discover: one object per probe) [default: text].
    #[arg(long, value_enum, default_value = "text")]
    pub format: RegimeFormat,

    /// Write to PATH instead of standard output.
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Exit with status 1 when the regime is one of these.
    #[arg(long, value_name = "REGIME,...", value_delimiter = ',',
          value_parser = ["open", "whitelist", "offline", "unknown"])]
    pub fail_on: Vec<String>,

    /// No summary line on standard error.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RegimeFormat {
    Text,
    Json,
    Jsonl,
}

/// Where the store is, for the reading commands.
/// Which probes of a fleet a store query is about (`history`, `export`).
#[derive(Debug, Args)]
pub struct FleetFilter {
    /// Only records measured from this vantage (`scan --vantage`, else the host name).
    #[arg(long, value_name = "NAME")]
    pub vantage: Option<String>,

    /// Only records measured from this autonomous system (`scan --asn-db`): 8402 or AS8402.
    #[arg(long, value_name = "ASN", value_parser = parse_asn)]
    pub asn: Option<u32>,
}

#[derive(Debug, Args)]
pub struct StoreArg {
    /// The measurement store: sqlite:PATH or postgres://USER@HOST/DB
    /// [default: BLOCKPROBE_STORE, else sqlite:$XDG_DATA_HOME/blockprobe/runs.db].
    #[arg(long, value_name = "URL", env = "BLOCKPROBE_STORE")]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  blockprobe history --store sqlite:runs.db --target whatsapp.com
  blockprobe history --since 7d --resolver isp --format csv > week.csv")]
pub struct HistoryArgs {
    #[command(flatten)]
    pub store: StoreArg,

    /// Only this target (as written in the scan, or its host name).
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,

    /// Only this vantage resolver (its NAME).
    #[arg(long, value_name = "NAME")]
    pub resolver: Option<String>,

    #[command(flatten)]
    pub fleet: FleetFilter,

    /// Only runs started since: a date (2026-11-01), an RFC 3339 time, or an age (7d, 24h).
    #[arg(long, value_name = "WHEN", value_parser = crate::store::query::parse_since)]
    pub since: Option<String>,

    /// table (consecutive runs with the same outcome collapsed), csv or json (every run).
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::store::query::Output,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  blockprobe diff --store sqlite:runs.db          # the last run against the one before it
  blockprobe diff RUN_A RUN_B --format csv

Exit status: 0, or 1 with --fail-on when such a change is listed; 2 when the runs cannot be
found.")]
pub struct DiffArgs {
    #[command(flatten)]
    pub store: StoreArg,

    /// The two runs to compare, older first [default: the last finished run and the one
    /// before it from the same vantage and resolvers].
    #[arg(value_name = "RUN", num_args = 2)]
    pub runs: Vec<String>,

    /// Without RUNs: the last two finished runs measured from this vantage (`scan --vantage`)
    /// with the same resolvers.
    #[arg(long, value_name = "NAME", conflicts_with = "runs")]
    pub vantage: Option<String>,

    /// Without RUNs: the last two finished runs measured from this autonomous system
    /// (`scan --asn-db`; 8402 or AS8402) from one vantage with the same resolvers.
    #[arg(long, value_name = "ASN", value_parser = parse_asn, conflicts_with = "runs")]
    pub asn: Option<u32>,

    /// table, csv or json.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::store::query::Output,

    /// Exit with status 1 when a change of these kinds is listed (blocked, unblocked,
    /// changed, regime, new, gone), e.g. --fail-on blocked to alert on new blocks. Changes as
    /// the network goes into or out of a whitelist regime are `regime`, not `blocked`.
    #[arg(long, value_name = "KIND,...", value_delimiter = ',',
          value_parser = ["blocked", "unblocked", "changed", "regime", "new", "gone"])]
    pub fail_on: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  blockprobe prune --store sqlite:runs.db --older-than 180d
  blockprobe prune --older-than 30d --dry-run")]
pub struct PruneArgs {
    #[command(flatten)]
    pub store: StoreArg,

    /// Delete runs started longer ago than this (e.g. 90d); runs still `running` are kept.
    #[arg(long, value_name = "AGE", value_parser = crate::store::query::parse_since)]
    pub older_than: String,

    /// Only say what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  blockprobe scan --suite whatsapp -o scan.json && blockprobe report scan.json -o scan.html
  blockprobe report --store sqlite:runs.db --since 30d -o month.html

The page has no scripts and loads nothing (its Content-Security-Policy forbids it): it opens
offline, from an email, and prints. Hover a cell for the evidence in words. See docs/report.md.")]
pub struct ReportArgs {
    /// A scan's report, JSON or JSONL (`-` reads standard input); without it, the store.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArg,

    /// From the store: only runs started since a date, an RFC 3339 time, or an age (7d).
    #[arg(long, value_name = "WHEN", value_parser = crate::store::query::parse_since)]
    pub since: Option<String>,

    /// From the store: only this run.
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,

    /// From the store: only runs measured from this vantage (`scan --vantage`), so a fleet's
    /// probes get a page each.
    #[arg(long, value_name = "NAME")]
    pub vantage: Option<String>,

    /// Write the page to PATH (atomically) instead of standard output.
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  blockprobe export --store sqlite:runs.db --format csv > all.csv
  blockprobe export --format jsonl --since 30d | duckdb -c \"SELECT verdict, count(*) FROM read_json_auto('/dev/stdin') GROUP BY 1\"

See docs/cron.md for DuckDB and ClickHouse.")]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArg,

    /// csv (the report's columns) or jsonl (the full records, evidence included).
    #[arg(long, value_enum)]
    pub format: crate::store::query::ExportFormat,

    /// Only runs started since: a date, an RFC 3339 time, or an age (7d).
    #[arg(long, value_name = "WHEN", value_parser = crate::store::query::parse_since)]
    pub since: Option<String>,

    /// Only this run.
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,

    #[command(flatten)]
    pub fleet: FleetFilter,

    /// Write to PATH (atomically) instead of standard output.
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

fn parse_asn(s: &str) -> Result<u32, String> {
    crate::asn::parse_asn(s).ok_or_else(|| format!("`{s}` is not an AS number (8402 or AS8402)"))
}
