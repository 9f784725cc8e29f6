#!/usr/bin/env python3
"""Regenerate blockprobe's block-page fingerprints from the public upstream datasets.

    python3 probes/update-blockpages.py \
        --ooni PATH/blocking-fingerprints \
        --censoredplanet PATH/censoredplanet-analysis \
        --citizenlab PATH/filtering-annotations

Each PATH is a clone of the upstream repository: a normal checkout or a bare git
directory (then the files are read from HEAD, or from --rev). The script writes

    probes/blockpages/ooni.toml              from ooni/blocking-fingerprints
    probes/blockpages/censoredplanet.toml    from censoredplanet/censoredplanet-analysis
    probes/blockpages/citizenlab.toml        from citizenlab/filtering-annotations
    tests/fixtures/blockpages/blocked/generated/<source>/<id>.http
                                             one sample response per HTTP fingerprint
    tests/fixtures/blockpages/dns.toml       one sample DNS answer per DNS fingerprint
    tests/fixtures/blockpages/expect.toml    which fingerprints match each blocked fixture

`probes/blockpages/extra.toml` and the hand-built fixtures (tests/fixtures/blockpages/
blocked/*.http, ordinary/*.http) are inputs: they are read, never rewritten.

Output is deterministic (entries sorted by id, no timestamps). `--check` regenerates in
memory and exits 1 if any file on disk differs. Only the Python 3.11 standard library
is used; `git` is needed only for bare clones.

The reference matcher at the bottom (`match_entry`) is the executable statement of the
semantics written in probes/blockpages/README.md.
"""

import argparse
import csv
import io
import ipaddress
import json
import os
import re
import re._parser as sre_parse  # Python 3.11
import subprocess
import sys
import tomllib
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "probes" / "blockpages"
FIX_DIR = ROOT / "tests" / "fixtures" / "blockpages"

OONI_HTTP = "fingerprints_http.csv"
OONI_DNS = "fingerprints_dns.csv"
CP_BLOCK = "pipeline/metadata/data/blockpage_signatures.json"
CP_FP = "pipeline/metadata/data/false_positive_signatures.json"
CL_HTTP = "data/v1/http.json"
CL_DNS = "data/v1/dns.json"

# --------------------------------------------------------------------------------------
# reading upstream clones


class Upstream:
    def __init__(self, path, slug, rev="HEAD"):
        self.path = Path(path)
        self.slug = slug
        self.rev = rev
        if (self.path / ".git").exists() or (self.path / "HEAD").is_file():
            self.commit = self._git("rev-parse", rev + "^{commit}").strip()
        else:
            self.commit = "unknown"
        self.bare = not any(self.path.glob("*.*")) and (self.path / "HEAD").is_file()

    def _git(self, *args):
        gitdir = self.path / ".git" if (self.path / ".git").exists() else self.path
        return subprocess.run(["git", "--git-dir", str(gitdir), *args], check=True,
                              capture_output=True).stdout.decode("utf-8")

    def read(self, rel):
        f = self.path / rel
        if f.is_file() and self.rev == "HEAD":
            return f.read_bytes().decode("utf-8")
        return self._git("show", f"{self.rev}:{rel}")

    def source(self, rel):
        return f"{self.slug}@{self.commit}:{rel}"


# --------------------------------------------------------------------------------------
# Rust `regex` compatibility (regex-syntax 0.8, as locked in Cargo.lock)

RUST_META = set("\\.+*?()|[]{}^$#&-~")


def rust_regex_problems(p):
    """Constructs Python's `re` accepts but Rust's `regex` rejects or reads differently."""
    problems = []
    i, n, in_class = 0, len(p), False
    prev_atom = False
    while i < n:
        c = p[i]
        if c == "\\":
            if i + 1 >= n:
                problems.append("trailing backslash")
                break
            e = p[i + 1]
            if e.isdigit():
                problems.append(f"backreference or octal escape \\{e}")
            elif e in "<>":
                problems.append(f"\\{e} is a word-boundary assertion in Rust but a literal in Python")
            elif not e.isascii():
                problems.append(f"escaped non-ASCII character \\{e}")
            elif e.isalpha() and e not in "aftnrvAzbBdDsSwWpPxuU":
                problems.append(f"unknown escape \\{e}")
            i += 2
            prev_atom = True
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c == "[":
                problems.append("'[' inside a character class starts a nested class in Rust")
            elif p.startswith(("&&", "--", "~~"), i):
                problems.append("'&&', '--' or '~~' inside a class is a set operation in Rust")
            i += 1
            continue
        if c == "[":
            in_class = True
            j = i + 1
            if j < n and p[j] == "^":
                j += 1
            if j < n and p[j] == "]":
                j += 1
            i = j
            prev_atom = True
            continue
        if c == "(" and p.startswith("(?", i):
            for bad, what in (("(?=", "lookahead"), ("(?!", "negative lookahead"),
                              ("(?<=", "lookbehind"), ("(?<!", "negative lookbehind"),
                              ("(?>", "atomic group"), ("(?P=", "named backreference"),
                              ("(?#", "comment group"), ("(?(", "conditional")):
                if p.startswith(bad, i):
                    problems.append(f"{what} {bad}")
        if c == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", p[i:])
            if not m or not prev_atom:
                problems.append("'{' that is not a counted repetition (Python: literal; Rust: error)")
            else:
                i += len(m.group(0))
                continue
        prev_atom = c not in "(|"
        i += 1
    return sorted(set(problems))


def rust_translate(p):
    """Rewrite the few Python-only constructs upstream uses into Rust syntax with the
    same meaning: a literal '{' / '}' is escaped, '\\<' '\\>' become '<' '>'."""
    out, i, n, in_class = [], 0, len(p), False
    prev_atom = False
    while i < n:
        c = p[i]
        if c == "\\" and i + 1 < n:
            e = p[i + 1]
            out.append(e if e in "<>" else c + e)
            i += 2
            prev_atom = True
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c == "[":
                out.append("\\[")
                i += 1
                continue
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
        if c == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", p[i:])
            if m and prev_atom:
                out.append(m.group(0))
                i += len(m.group(0))
                continue
            out.append("\\{")
            i += 1
            prev_atom = True
            continue
        if c == "}":
            out.append("\\}")
            i += 1
            prev_atom = True
            continue
        out.append(c)
        prev_atom = c not in "(|"
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------
# ISP attribution

# (regex over "id pattern notes", ISP). Applied when a dataset does not name the ISP in a
# structured way; every regex keys on a name/host the dataset itself gives.
ISP_RULES = [
    (r"rostel|rostelekom|(?<![\w-])(warning|block|block\.ip\.center)\.rt\.ru|(?<![\w.])rt\.ru/\?utm|"
     r"95\.167\.13\.5[01]|188\.19\.132\.15[45]", "Rostelecom"),
    (r"(?<![a-z])mts(?![a-z])|mts\.ru", "MTS"),
    (r"beeline", "Beeline"),
    (r"megafon", "MegaFon"),
    (r"tele2|t2blocked|t2rkn|217\.169\.82\.130", "Tele2"),
    (r"ertelecom|er-telecom|domru|(?<![\w-])dom\.ru|ru_dns_ert", "ER-Telecom (Dom.ru)"),
    (r"mgts|мгтс|62\.112\.121\.68", "MGTS"),
    (r"akado|комкор", "Akado"),
    (r"(?<![a-z])ttk(?![a-z])", "TTK"),
    (r"yota", "Yota"),
    (r"netbynet|blocked\.ti\.ru", "NetByNet"),
    (r"tinkoff", "Tinkoff Mobile"),
    (r"ufanet", "Ufanet"),
    (r"2090000|novotelecom", "Novotelecom"),
    (r"skydns", "SkyDNS"),
    (r"vasexperts", "VAS Experts (SKAT DPI)"),
    (r"runnet", "RUNNet"),
    (r"enforta", "Enforta"),
    (r"mastertel", "Mastertel"),
    (r"smoltelecom", "Smoltelecom"),
    (r"nauka", "Naukanet"),
    (r"skynet-kazan|skynet rkn|ru_89\b", "Skynet (Kazan)"),
    (r"peyvandha|10\.10\.34\.3[456]", ""),
    (r"telkomsel", "Telkomsel"),
    (r"indosat", "Indosat Ooredoo"),
    (r"airtel", "Airtel"),
    (r"turk ?net", "TurkNet"),
    (r"ttnet", "TTNet (Türk Telekom)"),
    (r"beltelecom", "Beltelecom"),
    (r"a1\.by|isp_by_a1", "A1"),
]
CP_ISP_TOKENS = {
    "pjscrostelekom": "Rostelecom", "mgts": "MGTS", "akado": "Akado", "beeline": "Beeline",
    "mts": "MTS", "yota": "Yota", "ertelecom": "ER-Telecom (Dom.ru)", "ttk": "TTK",
    "novotelecom": "Novotelecom", "post": "Post LTD (formerly KMV)", "orion": "Orion Net",
    "convex": "Convex", "wiland": "Wiland", "ugmk": "UGMK Telecom", "teleseti": "Teleseti",
    "strela": "Strela", "avantel": "Avantel", "sibset": "Sibset", "infolink": "Info-Link",
    "tscrimea": "TS Crimea", "goodline": "E-Light Telecom", "airtel": "Airtel",
    "melsa": "Melsa", "myrepublic": "MyRepublic", "hypernet": "Hypernet", "iforte": "iForte",
    "telkomsel": "Telkomsel", "indosat": "Indosat Ooredoo", "netsafe": "Indosat Ooredoo",
}
# CP name tokens that are not ISP names (generic block pages, orders, numbers).
CP_NOT_ISP = re.compile(r"^(generalbp\d*|court_order.*|generic.*|govt.*|\d+|[a-z]{2}|a_prod_.*)$")
# Spelling differences between datasets -> one name.
ISP_ALIASES = {"Megafon": "MegaFon", "Ertelecom": "ER-Telecom (Dom.ru)", "Tinkoff": "Tinkoff Mobile",
               "Skynet Kazan": "Skynet (Kazan)", "Indosat/Ooredo": "Indosat Ooredoo",
               "Rostelecom Block System": "Rostelecom"}
CL_NAME = re.compile(r"^(?:[A-Z]{2}(?:/[A-Za-z]+)*) (?:ISP )?(.+?)(?: Block(?: System)?| Blockpage)?$")


def isp_from_text(text):
    t = text.lower()
    for rx, isp in ISP_RULES:
        if re.search(rx, t):
            return isp or None
    return None


# --------------------------------------------------------------------------------------
# entries

COUNTRY_CODES = set("""AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL
BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE
NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD
SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA
UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW""".split())

# Reviewed by hand: upstream patterns that are generic enough to appear on ordinary pages
# (news about blocking, the regulator's own site, error pages). Kept, marked low.
GENERIC_REVIEWED = {
    "censoredplanet:f_gen_ru_20_satellite": "the title of Federal Law 149-FZ; quoted by every news story and legal page about it",
    "ooni:cp.f_gen_ru_20_satellite": "the title of Federal Law 149-FZ; quoted by every news story and legal page about it",
    "censoredplanet:d_corp_kz_ps": "two common words ('page blocked'); used in news and help pages",
    "ooni:cp.d_corp_kz_ps": "two common words ('page blocked'); used in news and help pages",
    "ooni:cl.isp_ru_linkregion_block": "upstream notes say 'this might be a broad pattern' ('<title>Federal block</title>')",
    "citizenlab:isp_ru_linkregion_block": "upstream notes say 'this might be a broad pattern' ('<title>Federal block</title>')",
    "ooni:cl.prod_vasexperts_forward": "any redirect to the vendor's own site vasexperts.ru, not only to its block page",
    "citizenlab:prod_vasexperts_forward": "any redirect to the vendor's own site vasexperts.ru, not only to its block page",
}
# Reviewed by hand: a specific link, but to the regulator's public registry pages, which the
# regulator's own site, news and legal pages link too. Kept, marked medium.
_RKN_LINK = "a link to the regulator's public registry page, which its own site, news and legal pages also carry"
MEDIUM_REVIEWED = {i: _RKN_LINK for i in (
    "ooni:ooni.ru_5", "censoredplanet:b_nat_ru_rkn", "ooni:cp.b_nat_ru_rkn_body",
    "censoredplanet:b_nat_ru_satellite_1", "ooni:cp.b_nat_ru_satellite_1",
    "censoredplanet:b_nat_ru_12_satellite", "ooni:cp.b_nat_ru_12_satellite")}
# Not censorship: benign injections (router firmware notice, MTS unpaid-bill redirect).
NOT_CENSORSHIP_SCOPES = {"injb"}
# Upstream entries whose text is in a language other than the country the name suggests.
LANG_NOTES = {
    "f_gen_ru_1": "text is Ukrainian (blocking under a Ukrainian presidential decree)",
    "f_gen_ru_5": "text is Ukrainian",
    "e_unk_ru_restrict": "text is Ukrainian",
    "f_gen_ru_1_satellite": "text is Romanian/Russian (Moldova)",
    "f_gen_ru_4_satellite": "text is Bulgarian",
    "f_gen_ru_6_satellite": "text is Belarusian",
    "f_gen_ru_17_satellite": "text is Belarusian (web-filtering add-on)",
    "f_gen_ru_8_satellite": "text is Kazakh",
    "e_unk_ru_forbid": "text is Serbian Cyrillic",
}


def clean(s):
    return (s or "").strip()


def is_ip(s):
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def confidence_label(e):
    """high / medium / low, with the reasons appended to e['flags']."""
    flags = e.setdefault("flags", [])
    scope = e.get("scope", "")
    p = e["pattern"]
    low = []
    if scope == "vbw":
        low.append("upstream scope 'vbw' (vague blocking word)")
    if e["id"] in GENERIC_REVIEWED:
        low.append("generic: " + GENERIC_REVIEWED[e["id"]])
    if e["kind"] == "http" and e["where"] in ("body", "response", "title") and e["match"] != "full":
        lit = regex_example(p) if e["match"] == "regex" else p
        if (len(lit.strip()) < 20 and not any(ch in lit for ch in "<>/=_:@&;")
                and not re.search(r"\d{4}|\w\.\w|\bGTM-\w|\bUA-\d", lit)):
            low.append("short generic phrase")
    if low:
        flags.extend(low)
        return "low"
    if e["id"] in MEDIUM_REVIEWED:
        flags.append("reviewed: " + MEDIUM_REVIEWED[e["id"]])
        return "medium"
    uc = e.get("upstream_confidence")
    if uc is not None and uc <= 7 and not (e["id"].startswith("ooni:") and uc == 5):
        flags.append(f"upstream confidence_no_fp {uc}/10")
        return "medium"
    if scope in NOT_CENSORSHIP_SCOPES:
        return "medium"
    return "high"


def lint(e):
    """Upstream data problems that make an entry unable to match real traffic."""
    p, where, m = e["pattern"], e["where"], e["match"]
    flags = e.setdefault("flags", [])
    if where.startswith("header") or where in ("location", "headers"):
        if m in ("prefix", "full") and p[:1].isspace():
            flags.append("leading whitespace: a header value never starts with a space, so this never matches")
    if where == "location" and ((m in ("prefix", "full") and not re.match(
            r"^\s*((https?:)?//|/|[\w.-]+\.[a-z]{2,}|\d+\.\d+\.\d+\.\d+)", p, re.I)) or " " in p.strip()):
        flags.append("not URL text, so no Location value carries it: upstream filed a header or body "
                     "text (e.g. a Server value; the Censored Planet/Citizen Lab original is a "
                     "'Server: ...' line or any-header pattern) under header.location")
    elif where == "location" and m == "prefix" and not re.match(r"^(https?:)?//|^/", p):
        flags.append("Location prefix without a scheme: real Location values are absolute URLs "
                     "('http://...'), so this only matches a scheme-less Location")
    if m in ("contains", "prefix", "full") and e["id"].startswith("ooni:cp."):
        if re.search(r"\\[.()?]|\.\*|\(\w+\|\w+\)", p):
            flags.append("looks like an unconverted Censored Planet regex; as a literal it will rarely match")
    if m == "regex":
        if "(BADINDEX)" in p:
            flags.append("'(BADINDEX)' is a regex group here, so the literal text '%!s(BADINDEX)' "
                         "on the real page does not match; the pattern matches '%!sBADINDEX'")
        if "</title>*" in p:
            flags.append("'>*' repeats '>' (probably meant '.*'): only matches when 'src=' "
                         "directly follows '</title>'")
        if ".rblocked.mts.ruu" in re.sub(r"\\(.)", r"\1", p):
            flags.append("malformed upstream text ('www.tmn.rblocked.mts.ruu'): a paste error, "
                         "kept verbatim; it matches nothing real")
    if e["id"].endswith(("inst_edu_runnet_blockpage",)):
        flags.append("upstream marks this body sentence as a header/Location pattern; "
                     "as such it never matches real traffic")


def host_of_location_pattern(p):
    """'http://warning.rt.ru', 'blocked.mgts.ru', '//217.169.82.130/' -> host, else None.
    Only patterns that name a host and nothing more (no path beyond '/')."""
    s = p.strip()
    m = re.match(r"^(?:https?:)?(?://)?([A-Za-z0-9.-]+\.[A-Za-z0-9-]+|\d+\.\d+\.\d+\.\d+)(?::\d+)?/?$", s)
    if not m:
        return None
    host = m.group(1).lower()
    if not is_ip(host) and not re.search(r"[a-z]", host.rsplit(".", 1)[-1]):
        return None
    return host


def derive_host(e):
    if e["kind"] != "http" or e.get("scope") in ("fp", "vbw", "injb") or e.get("confidence") == "low":
        return None
    p = e["pattern"]
    if e["where"] == "response":
        lit = re.sub(r"\\(.)", r"\1", p)
        if re.search(r"(?<!\\)[*+?()\[\]{}|^$]", p) or not re.search(p, lit):
            return None
        p = re.sub(r"^Location: ", "", lit)
    elif e["where"] not in ("location", "headers") or e["match"] not in ("prefix", "contains", "full"):
        return None
    host = host_of_location_pattern(p)
    if not host:
        return None
    d = {k: v for k, v in e.items() if k not in ("flags", "same_as", "pattern", "where", "match", "id")}
    d["id"] = e["id"] + "#host"
    d["where"] = "host"
    d["match"] = "full"
    d["pattern"] = host
    d["derived_from"] = e["id"]
    d["flags"] = [f"derived: the stub host named by {e['id']}'s Location pattern; matches a "
                  "redirect hop whose URL host is exactly this"]
    return d


def load_ooni(up):
    http = list(csv.DictReader(io.StringIO(up.read(OONI_HTTP), newline="")))
    dns = list(csv.DictReader(io.StringIO(up.read(OONI_DNS), newline="")))
    out, used = [], set()
    for rows, rel in ((http, OONI_HTTP), (dns, OONI_DNS)):
        for r in rows:
            loc = r["location_found"]
            pat = r["pattern"]
            uid = "ooni:" + r["name"]
            dup = uid in used
            if dup:
                uid += "#dns"
            used.add(uid)
            e = {"id": uid, "source": up.source(rel)}
            if dup:
                e["flags"] = [f"upstream name '{r['name']}' is used in both {OONI_HTTP} and {OONI_DNS}; "
                              "'#dns' added to keep ids unique"]
            e["country"] = ",".join(c.strip().upper() for c in r["expected_countries"].split(",") if c.strip())
            if loc == "dns":
                e["kind"] = "dns"
                e["where"] = "address" if is_ip(pat) else "cname"
            else:
                e["kind"] = "http"
                e["where"] = {"body": "body", "header.location": "location"}.get(
                    loc, "header:" + loc[len("header."):] if loc.startswith("header.") else loc)
            e["match"] = {"regexp": "regex"}.get(r["pattern_type"], r["pattern_type"])
            e["pattern"] = pat
            e["scope"] = r["scope"]
            if clean(r["confidence_no_fp"]):
                e["upstream_confidence"] = int(r["confidence_no_fp"])
            notes = clean(r["notes"])
            src = clean(r["source"])
            if notes:
                e["note"] = notes
            if src and src not in ("ooni", "censored planet"):
                e["citation"] = src
            if clean(r["exp_url"]):
                e["exp_url"] = clean(r["exp_url"])
            same = []
            name = r["name"]
            for other in [name] + [o.strip() for o in r["other_names"].split(",") if o.strip()]:
                if other.startswith("cl."):
                    same.append("citizenlab:" + other[3:])
                elif other.startswith("cp."):
                    same.append("censoredplanet:" + other[3:])
                elif other.startswith("ooni.") and other != name:
                    same.append("ooni:" + other)
            e["same_as"] = same
            e["_text"] = " ".join([name, r["other_names"], pat, notes])
            out.append(e)
    return out


def cp_country(name):
    toks = name.split("_")
    for t in toks[2:4]:
        if len(t) == 2 and t.upper() in COUNTRY_CODES:
            return t.upper()
    return ""


def load_cp(up):
    out, seen = [], {}
    for rel, is_fp in ((CP_BLOCK, False), (CP_FP, True)):
        for line in up.read(rel).splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            name = d["fingerprint"]
            seen[name] = seen.get(name, 0) + 1
            uid = name if seen[name] == 1 else f"{name}#{seen[name]}"
            e = {"id": "censoredplanet:" + uid, "source": up.source(rel), "kind": "http",
                 "where": "response", "match": "regex", "flags_regex": "s", "pattern": d["pattern"]}
            e["country"] = "" if is_fp else cp_country(name)
            cat = name.split("_")[1] if "_" in name else ""
            e["scope"] = "fp" if is_fp else {"prod": "prod", "nat": "nat", "isp": "isp", "corp": "inst",
                                             "unk": "unk", "gen": "vbw"}.get(cat, cat)
            e["flags"] = []
            if seen[name] > 1:
                e["flags"].append(f"upstream name '{name}' is used {seen[name]} times; '#{seen[name]}' "
                                  "added to keep ids unique")
            if name in LANG_NOTES:
                e["flags"].append(LANG_NOTES[name])
            e["same_as"] = ["ooni:cp." + ("fp_" if is_fp else "") + name]
            e["_text"] = name + " " + d["pattern"]
            if not is_fp and name.startswith("c_isp_"):
                tok = "_".join(name.split("_")[3:]).replace("_satellite", "")
                tok = re.sub(r"_(redirect_)?\d.*$", "", tok)
                isp = (CP_ISP_TOKENS.get(tok) or isp_from_text(e["_text"])
                       or (None if CP_NOT_ISP.match(tok) else tok))
                if isp:
                    e["_cp_isp"] = isp
            out.append(e)
    return out


def load_cl(up):
    out = []
    for d in json.loads(up.read(CL_HTTP)):
        e = {"id": "citizenlab:" + d["name"], "source": up.source(CL_HTTP), "kind": "http",
             "where": {"body": "body", "header": "headers"}[d["location_found"]],
             "match": "contains", "pattern": d["pattern"], "scope": d["scope"],
             "country": ",".join(c.upper() for c in d["expected_countries"]),
             "upstream_confidence": int(d["confidence_no_fp"])}
        _cl_common(e, d)
        out.append(e)
    for d in json.loads(up.read(CL_DNS)):
        pat = d["response"]
        e = {"id": "citizenlab:" + d["name"], "source": up.source(CL_DNS), "kind": "dns",
             "where": "address" if is_ip(pat) else "cname", "match": "full", "pattern": pat,
             "scope": d["scope"], "country": ",".join(c.upper() for c in d["expected_countries"]),
             "upstream_confidence": int(d["confidence_no_fp"])}
        _cl_common(e, d)
        out.append(e)
    return out


def _cl_common(e, d):
    notes = re.sub(r"\s+", " ", clean(d.get("notes"))).strip()
    if notes:
        e["note"] = notes
    if d.get("common_name"):
        e["common_name"] = d["common_name"]
        m = CL_NAME.match(d["common_name"])
        if m and d.get("scope") in ("isp", "nat") and " ISP " in d["common_name"]:
            e["_cl_isp"] = ISP_ALIASES.get(m.group(1), m.group(1))
        elif "Formula Svyaz" in d["common_name"]:
            e["_cl_isp"] = "Formula Svyaz"
    srcs = [s for s in (d.get("source") or []) if s]
    if srcs:
        e["citation"] = ", ".join(srcs)
    if clean(d.get("exp_url")):
        e["exp_url"] = clean(d["exp_url"])
    e["same_as"] = ["ooni:cl." + d["name"]]
    e["_text"] = " ".join([d["name"], d.get("common_name", ""), d["pattern"] if "response" not in d else d["response"], notes])


def finish(entries, cl_isp_by_id):
    """ISP attribution, lint, regex checks, derived host entries, confidence."""
    ids = {e["id"] for e in entries}
    out = []
    for e in entries:
        e.setdefault("flags", [])
        isp = e.pop("_cl_isp", None) or e.pop("_cp_isp", None)
        if not isp:
            for other in [e["id"]] + e.get("same_as", []):
                if other in cl_isp_by_id:
                    isp = cl_isp_by_id[other]
                    break
        if not isp and e.get("scope") not in ("fp", "vbw", "prod"):
            isp = isp_from_text(e["_text"])
        e.pop("_text", None)
        if isp:
            e["isp"] = isp
        lint(e)
        if e["match"] == "regex":
            try:
                re.compile(e["pattern"], re.S)
            except re.error as err:
                e["flags"].append(f"does not compile in Python: {err}")
            probs = rust_regex_problems(e["pattern"])
            if probs:
                t = rust_translate(e["pattern"])
                if not rust_regex_problems(t):
                    e["upstream_pattern"] = e["pattern"]
                    e["pattern"] = t
                    e["flags"].append("translated for Rust regex (" + "; ".join(probs) +
                                      "); upstream text kept in upstream_pattern")
                else:
                    e["flags"].append("NOT Rust-compatible: " + "; ".join(probs))
        e["same_as"] = sorted(s for s in set(e.get("same_as", [])) if s in ALL_IDS and s != e["id"])
        e["confidence"] = confidence_label(e)
        out.append(e)
        h = derive_host(e)
        if h:
            h["confidence"] = confidence_label(h)
            out.append(h)
    for e in out:
        if e.get("scope") in NOT_CENSORSHIP_SCOPES:
            e["flags"].append("not censorship: upstream scope 'injb' (benign injection, e.g. a bill-payment "
                              "or router-firmware notice); do not report as a censorship block page")
    return sorted(out, key=lambda e: e["id"])


ALL_IDS = set()

# --------------------------------------------------------------------------------------
# TOML output


def toml_str(s):
    bad = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
    if "'''" not in s and not bad.search(s) and not s.endswith("'") and not s.startswith("\n"):
        return "'''" + s + "'''" if ("'" in s or "\\" in s or '"' in s) else json.dumps(s, ensure_ascii=False)
    j = json.dumps(s, ensure_ascii=False)
    return j.replace("\x7f", "\\u007f")


FIELD_ORDER = ["id", "source", "country", "isp", "kind", "where", "match", "regex_flags", "pattern",
               "upstream_pattern", "confidence", "upstream_confidence", "scope", "common_name", "note",
               "exp_url", "citation", "same_as", "derived_from"]


def render(entries, header):
    lines = [header.rstrip(), ""]
    for e in entries:
        e = dict(e)
        if e.get("flags_regex"):
            e["regex_flags"] = e.pop("flags_regex")
        review = e.pop("flags", [])
        if review:
            e["note"] = (e.get("note", "") + " " if e.get("note") else "") + \
                " ".join(f"[review] {r}." if not r.endswith(".") else f"[review] {r}" for r in review)
        lines.append("[[false_positive]]" if e.get("scope") == "fp" else "[[fingerprint]]")
        for k in FIELD_ORDER:
            if k not in e:
                continue
            v = e[k]
            if isinstance(v, list):
                if v:
                    lines.append(f"{k} = [" + ", ".join(toml_str(x) for x in v) + "]")
            elif isinstance(v, int):
                lines.append(f"{k} = {v}")
            else:
                lines.append(f"{k} = {toml_str(v)}")
        lines.append("")
    return "\n".join(lines)


HEADER = """# Block-page fingerprints carried over from {slug}
# ({src}), commit {commit}.
# GENERATED by probes/update-blockpages.py - do not edit by hand; see probes/blockpages/README.md
# for the fields, their meaning and how to regenerate. {n} [[fingerprint]] entries, {nfp} [[false_positive]].
"""

# --------------------------------------------------------------------------------------
# reference matcher (the semantics the Rust engine implements)


class Response:
    def __init__(self, raw: bytes):
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = raw.partition(b"\n\n")
        lines = head.decode("iso-8859-1").replace("\r\n", "\n").split("\n")
        self.status_line = lines[0]
        self.header_lines = [l for l in lines[1:] if l]
        self.headers = []
        for l in self.header_lines:
            k, _, v = l.partition(":")
            self.headers.append((k.strip().lower(), v.strip()))
        self.body_bytes = body
        self.charset = self._charset()
        try:
            self.body = body.decode(self.charset, errors="replace")
        except LookupError:
            self.body = body.decode("utf-8", errors="replace")

    def header(self, name):
        return [v for k, v in self.headers if k == name]

    def _charset(self):
        for v in self.header("content-type"):
            m = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", v, re.I)
            if m:
                return m.group(1).lower()
        head = self.body_bytes[:1024].decode("ascii", errors="replace")
        m = re.search(r"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", head, re.I)
        if m:
            return m.group(1).lower()
        return "utf-8"

    def title(self):
        m = re.search(r"<title[^>]*>(.*?)</title>", self.body, re.I | re.S)
        return re.sub(r"\s+", " ", m.group(1)).strip() if m else None

    def location_host(self):
        for v in self.header("location"):
            h = urllib.parse.urlsplit(v if "//" in v else "//" + v).hostname
            if h:
                return h
        return None

    def text_of(self, where):
        cache = self.__dict__.setdefault("_cache", {})
        if where not in cache:
            cache[where] = self._text_of(where)
        return cache[where]

    def _text_of(self, where):
        if where == "body":
            return [self.body]
        if where == "title":
            t = self.title()
            return [t] if t is not None else []
        if where == "location":
            return self.header("location")
        if where.startswith("header:"):
            return self.header(where[len("header:"):])
        if where == "headers":
            return ["\r\n".join(self.header_lines)]
        if where == "host":
            h = self.location_host()
            return [h] if h else []
        if where == "response":
            return [self.status_line + "\r\n" + "".join(l + "\r\n" for l in self.header_lines) + "\r\n" + self.body]
        raise ValueError(where)


_RX = {}


def match_entry(e, resp):
    if e["kind"] != "http":
        return False
    p, m = e["pattern"], e["match"]
    for text in resp.text_of(e["where"]):
        if m == "full" and text == p:
            return True
        if m == "prefix" and text.startswith(p):
            return True
        if m == "contains" and p in text:
            return True
        if m == "regex":
            key = (p, e.get("flags_regex", ""))
            if key not in _RX:
                _RX[key] = re.compile(("(?s)" if "s" in key[1] else "") + p)
            if _RX[key].search(text):
                return True
    return False


# --------------------------------------------------------------------------------------
# sample fixtures


def regex_example(p):
    """A short deterministic string the regex matches (for the subset upstream uses)."""
    try:
        tree = sre_parse.parse(p)
    except re.error:
        return p

    def gen(items):
        s = []
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                s.append(chr(av))
            elif name == "ANY":
                s.append(" ")
            elif name in ("MAX_REPEAT", "MIN_REPEAT"):
                lo, hi, sub = av
                anyonly = len(sub) == 1 and str(sub[0][0]) == "ANY"
                k = lo if anyonly else min(max(lo, 1), hi)
                s.append(gen(sub) * k)
            elif name == "SUBPATTERN":
                s.append(gen(av[-1]))
            elif name == "BRANCH":
                s.append(gen(av[1][0]))
            elif name == "IN":
                for o, a in av:
                    if str(o) == "LITERAL":
                        s.append(chr(a))
                        break
                    if str(o) == "RANGE":
                        s.append(chr(a[0]))
                        break
                    if str(o) == "CATEGORY":
                        s.append({"CATEGORY_DIGIT": "0", "CATEGORY_SPACE": " "}.get(str(a), "a"))
                        break
                else:
                    s.append("a")
            elif name == "CATEGORY":
                s.append("a")
            elif name == "AT":
                pass
            elif name == "NOT_LITERAL":
                s.append("a" if av != ord("a") else "b")
            else:
                s.append("")
        return "".join(s)

    return gen(tree)


HTML_TMPL = ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n{title}</head>\n<body>\n"
             "<div class=\"notice\">\n{body}\n</div>\n</body>\n</html>\n")


def http_response(status, headers, body: bytes):
    hs = list(headers)
    if body is not None:
        hs.append(("Content-Length", str(len(body))))
    hs.append(("Connection", "close"))
    head = status + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n"
    return head.encode("utf-8") + (body or b"")


def html_with(fragment):
    title = "" if re.search(r"<title", fragment, re.I) else "<title>Notice</title>\n"
    return HTML_TMPL.format(title=title, body=fragment).encode("utf-8")


def sample_for(e):
    """A realistic response that carries the entry's own text where the entry looks for it."""
    p, where, m = e["pattern"], e["where"], e["match"]
    ctype = ("Content-Type", "text/html; charset=utf-8")
    server = ("Server", "nginx")
    if where == "response":
        lit = regex_example(p)
        hm = re.match(r"^\s*([A-Za-z][A-Za-z0-9-]*): ?(.*)$", lit, re.S)
        if hm and hm.group(1).lower() in ("location", "server", "set-cookie", "via", "x-squid-error",
                                          "x-powered-by", "www-authenticate", "x-app-url"):
            name, value = hm.group(1), hm.group(2)
            if name.lower() == "location":
                return http_response("HTTP/1.1 302 Found", [server, (name, value), ctype], b"")
            return http_response("HTTP/1.1 403 Forbidden", [(name, value), ctype], html_with("Access denied."))
        if lit.startswith("HTTP/"):
            return (lit + "\r\n\r\n").encode("utf-8")
        return http_response("HTTP/1.1 200 OK", [server, ctype], html_with(lit))
    if where == "body":
        if m == "full":
            return http_response("HTTP/1.1 200 OK", [server, ctype], p.encode("utf-8"))
        if m == "prefix":
            return http_response("HTTP/1.1 200 OK", [server, ctype], (p + "\n</body></html>\n").encode("utf-8"))
        frag = regex_example(p) if m == "regex" else p
        return http_response("HTTP/1.1 200 OK", [server, ctype], html_with(frag))
    if where == "title":
        return http_response("HTTP/1.1 200 OK", [server, ctype], html_with(f"<title>{p}</title>"))
    if where in ("location", "host") or (where == "headers" and _url_like(p)):
        if where == "host":
            loc = "http://" + p + "/"
        elif m == "regex":
            loc = regex_example(p)
        elif m == "prefix" and re.match(r"^https?://[^/?#]+$", p):
            loc = p + "/"
        elif m in ("prefix", "full"):
            loc = p
        else:
            loc = _absolute(p)
        body = f'<html><head><title>302 Found</title></head><body><a href="{loc}">Found</a></body></html>\n'
        return http_response("HTTP/1.1 302 Found", [server, ("Location", loc), ctype], body.encode("utf-8"))
    if where == "headers":
        hm = re.match(r"^([A-Za-z][A-Za-z0-9-]*): (.*)$", p)
        name, value = (hm.group(1), hm.group(2)) if hm else ("Server", p)
        return http_response("HTTP/1.1 403 Forbidden", [(name, value), ctype], html_with("Access denied."))
    if where.startswith("header:"):
        name = "-".join(w.capitalize() for w in where[len("header:"):].split("-"))
        value = regex_example(p) if m == "regex" else p
        return http_response("HTTP/1.1 403 Forbidden", [(name, value), ctype], html_with("Access denied."))
    raise ValueError(where)


def _url_like(p):
    p = p.strip()
    return bool(re.match(r"^([a-z]+:)?//|^[\w.-]+\.[a-z]{2,}(:\d+)?([/?]|$)|^\d+\.\d+\.\d+\.\d+|^[/?]", p, re.I)
                or (" " not in p and ("/" in p or "?" in p)))


def _absolute(p):
    """A Location value that contains `p`: p itself when it is already a URL or a
    relative reference, else p behind a scheme (host-like) or a documentation address."""
    if re.match(r"^[a-z]+://", p, re.I) or p.startswith(("/", "?")) and not p.startswith("//"):
        return p
    if p.startswith("//"):
        return "http:" + p
    if p.startswith("://"):
        return "http" + p
    if re.match(r"^[\w.-]+\.[a-z]{2,}(:\d+)?([/?]|$)|^\d+\.\d+\.\d+\.\d+", p, re.I):
        return "http://" + p
    return "http://192.0.2.1/" + p


def fixture_name(eid):
    src, _, name = eid.partition(":")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if safe != name:
        safe += "-" + format(sum(map(ord, name)) % 65536, "04x")
    return f"generated/{src}/{safe}.http"


# --------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ooni", required=True, help="clone of ooni/blocking-fingerprints")
    ap.add_argument("--censoredplanet", required=True, help="clone of censoredplanet/censoredplanet-analysis")
    ap.add_argument("--citizenlab", required=True, help="clone of citizenlab/filtering-annotations")
    ap.add_argument("--rev", default="HEAD", help="revision to read in each clone (default HEAD)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if files are out of date")
    args = ap.parse_args()

    ups = {
        "ooni": Upstream(args.ooni, "ooni/blocking-fingerprints", args.rev),
        "censoredplanet": Upstream(args.censoredplanet, "censoredplanet/censoredplanet-analysis", args.rev),
        "citizenlab": Upstream(args.citizenlab, "citizenlab/filtering-annotations", args.rev),
    }
    raw = {"ooni": load_ooni(ups["ooni"]), "censoredplanet": load_cp(ups["censoredplanet"]),
           "citizenlab": load_cl(ups["citizenlab"])}
    ALL_IDS.update(e["id"] for es in raw.values() for e in es)
    cl_isp = {e["id"]: e["_cl_isp"] for e in raw["citizenlab"] if e.get("_cl_isp")}
    final = {k: finish(v, cl_isp) for k, v in raw.items()}

    extra_path = OUT_DIR / "extra.toml"
    extra = tomllib.loads(extra_path.read_text("utf-8")).get("fingerprint", []) if extra_path.exists() else []
    for e in extra:
        e.setdefault("flags", [])

    # ordinary pages: any fingerprint that matches one is generic -> low, with a note
    ordinary = {}
    for f in sorted((FIX_DIR / "ordinary").glob("*.http")):
        ordinary[f.name] = Response(f.read_bytes())
    hits = {}
    every = [e for es in final.values() for e in es] + extra
    for e in every:
        if e.get("scope") == "fp" or e["kind"] != "http":
            continue
        names = [n for n, r in ordinary.items() if match_entry(e, r)]
        if names:
            hits[e["id"]] = names
            if e in extra:
                sys.exit(f"extra.toml entry {e['id']} matches ordinary page(s) {names}")
            if e["confidence"] != "low":
                lit = regex_example(e["pattern"]) if e["match"] == "regex" else e["pattern"]
                if re.search(r"\w\.\w|\d{4}", lit):
                    e["flags"].append("a specific marker (host, address or ID), but pages about blocking name it "
                                      "too: matches ordinary test page(s) " + ", ".join(names) +
                                      "; prefer the Location/host form, or corroborate")
                    e["confidence"] = "medium"
                else:
                    e["flags"].append("generic: matches ordinary test page(s) " + ", ".join(names))
                    e["confidence"] = "low"
            else:
                e["flags"].append("matches ordinary test page(s) " + ", ".join(names))

    files = {}
    for k, es in final.items():
        up = ups[k]
        rel = {"ooni": f"{OONI_HTTP}, {OONI_DNS}", "censoredplanet": f"{CP_BLOCK}, {CP_FP}",
               "citizenlab": f"{CL_HTTP}, {CL_DNS}"}[k]
        hdr = HEADER.format(slug=up.slug, src=rel, commit=up.commit,
                            n=sum(1 for e in es if e.get("scope") != "fp"),
                            nfp=sum(1 for e in es if e.get("scope") == "fp"))
        files[OUT_DIR / f"{k}.toml"] = render(es, hdr)

    # samples + expectations
    http_fps = [e for e in every if e["kind"] == "http" and e.get("scope") != "fp"]
    fps = [e for e in every if e.get("scope") == "fp"]
    gen = {}
    for e in http_fps:
        if e["id"].startswith("extra:"):
            continue
        gen[fixture_name(e["id"])] = (e["id"], sample_for(e))
    expect_match, expect_fp, missing = {}, {}, []
    blocked_dir = FIX_DIR / "blocked"
    samples = [(n, b, prim) for n, (prim, b) in gen.items()]
    for f in sorted(blocked_dir.glob("*.http")):
        samples.append((f.name, f.read_bytes(), None))
    for n, b, prim in samples:
        r = Response(b)
        ids = sorted(e["id"] for e in http_fps if match_entry(e, r))
        if prim is not None and prim not in ids:
            missing.append((n, prim))
        if prim is not None:
            ids = [prim] + [i for i in ids if i != prim]
        if not ids:
            missing.append((n, None))
        expect_match[n] = ids
        f_ids = sorted(e["id"] for e in fps if match_entry(e, r))
        if f_ids:
            expect_fp[n] = f_ids
    if missing:
        for n, p in missing:
            print(f"sample {n} does not match {p or 'any fingerprint'}", file=sys.stderr)
        sys.exit(1)

    # DNS samples
    dns_lines = ["# One answer per DNS fingerprint: a vantage resolver returning `value` for",
                 "# `qname` must be dns.blockpage, naming `expect`. GENERATED by probes/update-blockpages.py.", ""]
    for e in sorted((e for e in every if e["kind"] == "dns"), key=lambda e: e["id"]):
        v = e["pattern"]
        rrtype = "CNAME" if e["where"] == "cname" else ("AAAA" if ":" in v else "A")
        dns_lines += ["[[answer]]", f"expect = {toml_str(e['id'])}", 'qname = "blocked-site.example"',
                      f"rrtype = {toml_str(rrtype)}", f"value = {toml_str(v)}", ""]
    files[FIX_DIR / "dns.toml"] = "\n".join(dns_lines)

    ex = ["# Which fingerprints match each blocked fixture (first id = the fingerprint the sample was built",
          "# from, for generated samples), per the reference matcher in probes/update-blockpages.py.",
          "# GENERATED - do not edit. Paths are relative to tests/fixtures/blockpages/blocked/.", "",
          "[match]"]
    for n in sorted(expect_match):
        ex.append(f"{toml_str(n)} = [" + ", ".join(toml_str(i) for i in expect_match[n]) + "]")
    ex += ["", "# Blocked fixtures that ALSO match a [[false_positive]] signature (Censored Planet checks",
           "# false positives first; an engine doing the same would miss these).", "[false_positive]"]
    for n in sorted(expect_fp):
        ex.append(f"{toml_str(n)} = [" + ", ".join(toml_str(i) for i in expect_fp[n]) + "]")
    ex += ["", "# Ordinary pages (tests/fixtures/blockpages/ordinary/) that a low- or medium-confidence",
           "# fingerprint matches on its own. None of these may be reported as a block page: such",
           "# fingerprints need corroboration (see probes/blockpages/README.md). No high-confidence",
           "# fingerprint matches any ordinary page (the generator demotes any that would).",
           "[ordinary_weak_hits]"]
    inv = {}
    for i, ns in hits.items():
        for n in ns:
            inv.setdefault(n, []).append(i)
    for n in sorted(inv):
        ex.append(f"{toml_str(n)} = [" + ", ".join(toml_str(i) for i in sorted(inv[n])) + "]")
    files[FIX_DIR / "expect.toml"] = "\n".join(ex) + "\n"

    gen_root = blocked_dir / "generated"
    gen_files = {blocked_dir / n: b for n, (_, b) in gen.items()}

    # round-trip every TOML through tomllib
    for path, text in files.items():
        tomllib.loads(text)
    for k, es in final.items():
        parsed = tomllib.loads(files[OUT_DIR / f"{k}.toml"])
        got = {e["id"]: e["pattern"] for e in parsed.get("fingerprint", []) + parsed.get("false_positive", [])}
        for e in es:
            assert got[e["id"]] == e["pattern"], e["id"]

    stale = []
    for path, text in files.items():
        data = text.encode("utf-8")
        if not path.exists() or path.read_bytes() != data:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    existing = set(gen_root.rglob("*.http")) if gen_root.exists() else set()
    for path, data in gen_files.items():
        if not path.exists() or path.read_bytes() != data:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    for path in sorted(existing - set(gen_files)):
        stale.append(path)
        if not args.check:
            path.unlink()
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)}", file=sys.stderr)
        sys.exit(1 if stale else 0)
    print(f"{len(stale)} file(s) written")
    for k, es in final.items():
        print(f"{k}: {sum(1 for e in es if e.get('scope') != 'fp')} fingerprints, "
              f"{sum(1 for e in es if e.get('scope') == 'fp')} false-positive signatures")
    print(f"extra: {len(extra)} fingerprints; {len(gen)} generated samples; "
          f"{len(hits)} fingerprints match an ordinary page")


if __name__ == "__main__":
    main()
