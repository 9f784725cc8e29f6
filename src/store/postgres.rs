//! PostgreSQL through the `postgres` crate (many vantage points, one database). The cron lock
//! is a session advisory lock keyed by the host name, so a fleet's machines write at the same
//! time while one machine's overlapping runs do not.
//!
//! Connections are unencrypted (`NoTls`): use a local socket, loopback, or a tunnel.

use postgres::types::{IsNull, ToSql, Type};

use crate::store::{Db, Dialect, Value};

pub struct Postgres {
    client: postgres::Client,
    /// Prepared statements by SQL text (the inserts repeat thousands of times).
    prepared: std::collections::HashMap<String, postgres::Statement>,
}

impl Postgres {
    fn statement(&mut self, sql: &str) -> anyhow::Result<postgres::Statement> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        if self.prepared.len() < 64 {
            self.prepared.insert(sql.to_owned(), s.clone());
        }
        Ok(s)
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Self::Int(i) if *ty == Type::TEXT || *ty == Type::VARCHAR => {
                i.to_string().to_sql(ty, out)
            }
            Self::Int(i) => i.to_sql(ty, out),
            Self::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl Postgres {
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        let client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to {}: {e}",
                crate::store::StoreUrl::Postgres(url.to_owned())
            )
        })?;
        Ok(Self {
            client,
            prepared: std::collections::HashMap::new(),
        })
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Db for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        let stmt = self.statement(sql)?;
        Ok(self.client.execute(&stmt, &refs(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Vec<Value>>> {
        let rows = self.client.query(sql, &refs(params))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut r = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let t = col.type_();
                r.push(if *t == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i)?
                        .map_or(Value::Null, Value::Int)
                } else if *t == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)?
                        .map_or(Value::Null, |v| Value::Int(v.into()))
                } else if *t == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i)?
                        .map_or(Value::Null, |v| Value::Int(v.into()))
                } else {
                    row.try_get::<_, Option<String>>(i)?
                        .map_or(Value::Null, Value::Text)
                });
            }
            out.push(r);
        }
        Ok(out)
    }

    fn lock(&mut self, key: &str, _holder: &str, wait: bool) -> anyhow::Result<bool> {
        // A stable 64-bit key from the host name (FNV-1a).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("blockprobe:{key}").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let k = i64::from_ne_bytes(h.to_ne_bytes());
        if wait {
            self.client.execute("SELECT pg_advisory_lock($1)", &[&k])?;
            return Ok(true);
        }
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&k])?;
        Ok(row.get::<_, bool>(0))
    }
}
