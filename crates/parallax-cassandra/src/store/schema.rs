//! The keyspace's tables and the statements prepared on them: one CQL table
//! per declared view, and the checkpoints and dead letters of every
//! projection.

use parallax_core::ReadStoreError;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::statement::Consistency;

use super::cql;
use super::levels::Levels;

/// The CQL table name of a view, or why it has none.
pub(super) fn table_name(view: &str) -> Result<String, ReadStoreError> {
    let valid = !view.is_empty()
        && view.len() <= 46
        && view.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(ReadStoreError::msg(format!(
            "view name {view:?} does not map to a CQL table: use at most 46 letters, digits, '_' or '-'"
        )));
    }
    Ok(format!("v_{}", view.to_ascii_lowercase().replace('-', "_")))
}

pub(super) fn valid_keyspace(keyspace: &str) -> Result<(), ReadStoreError> {
    let valid = !keyspace.is_empty()
        && keyspace.len() <= 48
        && keyspace.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && keyspace.starts_with(|c: char| c.is_ascii_lowercase());
    if valid {
        Ok(())
    } else {
        Err(ReadStoreError::msg(format!(
            "keyspace name {keyspace:?} is not valid: start with a letter, then at most 47 lowercase letters, digits or '_'"
        )))
    }
}

/// A view's table and its statements.
pub(super) struct ViewTable {
    pub(super) shared: bool,
    pub(super) get: PreparedStatement,
    /// Scans by lower bound (none, inclusive, exclusive) × upper bound (none, exclusive).
    pub(super) scans: Vec<PreparedStatement>,
    /// Owned rows: timestamped upsert and delete.
    pub(super) put: PreparedStatement,
    pub(super) delete: PreparedStatement,
    /// Shared rows: compare-and-set on the revision.
    pub(super) insert_if_absent: PreparedStatement,
    pub(super) update_if: PreparedStatement,
    pub(super) delete_if: PreparedStatement,
    pub(super) revision_serial: PreparedStatement,
}

pub(super) struct Statements {
    pub(super) checkpoint: PreparedStatement,
    pub(super) checkpoint_serial: PreparedStatement,
    pub(super) checkpoints: PreparedStatement,
    pub(super) checkpoint_insert: PreparedStatement,
    pub(super) checkpoint_update: PreparedStatement,
    pub(super) dead_letter_insert: PreparedStatement,
    pub(super) dead_letters: PreparedStatement,
}

pub(super) async fn migrate<'a>(
    session: &Session,
    keyspace: &str,
    replication_factor: u32,
    tables: impl Iterator<Item = &'a str>,
) -> Result<(), ReadStoreError> {
    let mut ddl = vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
             {{'class': 'SimpleStrategy', 'replication_factor': {}}}",
            replication_factor.max(1)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.checkpoints (projection text, source_partition int, \
             position bigint, source_offset bigint, PRIMARY KEY ((projection), source_partition))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.dead_letters (projection text, position bigint, \
             event_id uuid, event_type text, error text, PRIMARY KEY ((projection), position))"
        ),
    ];
    for table in tables {
        ddl.push(format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{table} (p text, c text, body text, rev bigint, \
             marks map<int, bigint>, PRIMARY KEY ((p), c)) WITH CLUSTERING ORDER BY (c ASC)"
        ));
    }
    for statement in ddl {
        session
            .query_unpaged(statement.as_str(), ())
            .await
            .map_err(cql(format!("create the schema: {statement}")))?;
    }
    session
        .await_schema_agreement()
        .await
        .map_err(|e| ReadStoreError::store("wait for the schema to settle", e))?;
    Ok(())
}

/// A read of a node's own tables (`system_schema`): one node holds them,
/// so no level above one can be met (`TWO` fails there).
pub(super) fn local_read(text: &str) -> Statement {
    let mut statement = Statement::new(text);
    statement.set_consistency(Consistency::LocalOne);
    statement.set_is_idempotent(true);
    statement
}

/// The replication factor of `keyspace`, if it exists (`SimpleStrategy`'s
/// `replication_factor`, or the sum over datacenters of
/// `NetworkTopologyStrategy`).
pub(super) async fn keyspace_replication(
    session: &Session,
    keyspace: &str,
) -> Result<Option<u32>, ReadStoreError> {
    let what = "read the keyspace's replication";
    let rows = session
        .query_unpaged(
            local_read("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?"),
            (keyspace,),
        )
        .await
        .map_err(cql(what))?
        .into_rows_result()
        .map_err(|e| ReadStoreError::store(what, e))?;
    let Some((replication,)) = rows
        .maybe_first_row::<(std::collections::HashMap<String, String>,)>()
        .map_err(|e| ReadStoreError::store(what, e))?
    else {
        return Ok(None);
    };
    let factor = replication
        .iter()
        .filter(|(option, _)| option.as_str() != "class")
        .filter_map(|(_, value)| value.parse::<u32>().ok())
        .sum();
    Ok(Some(factor))
}

/// Prepares `statement` to run at `levels`: its consistency, and the serial
/// level of its Paxos round when it is a lightweight transaction.
pub(super) async fn prepare(
    session: &Session,
    levels: Levels,
    statement: String,
) -> Result<PreparedStatement, ReadStoreError> {
    let mut prepared = session
        .prepare(statement.as_str())
        .await
        .map_err(|e| ReadStoreError::store(format!("prepare {statement}"), e))?;
    prepared.set_consistency(levels.consistency);
    prepared.set_serial_consistency(Some(levels.serial));
    // A read may be sent again to another node (one that died with the
    // request, say): reading twice changes nothing.
    if statement.starts_with("SELECT ") {
        prepared.set_is_idempotent(true);
    }
    Ok(prepared)
}

/// Prepares a serial read: a read at the serial level, linearizable with
/// the lightweight transactions (it finishes one left in progress).
pub(super) async fn prepare_serial(
    session: &Session,
    levels: Levels,
    statement: String,
) -> Result<PreparedStatement, ReadStoreError> {
    let mut prepared = prepare(session, levels, statement).await?;
    prepared.set_consistency(levels.serial_read());
    Ok(prepared)
}

pub(super) async fn prepare_view(
    session: &Session,
    levels: Levels,
    keyspace: &str,
    table: &str,
    shared: bool,
) -> Result<ViewTable, ReadStoreError> {
    let t = format!("{keyspace}.{table}");
    let mut scans = Vec::with_capacity(6);
    for lower in ["", " AND c >= ?", " AND c > ?"] {
        for upper in ["", " AND c < ?"] {
            scans.push(
                prepare(
                    session,
                    levels,
                    format!("SELECT c, body FROM {t} WHERE p = ?{lower}{upper} LIMIT ?"),
                )
                .await?,
            );
        }
    }
    let mut put = prepare(
        session,
        levels,
        format!(
            "UPDATE {t} USING TIMESTAMP ? SET body = ?, rev = ?, marks = marks + ? WHERE p = ? AND c = ?"
        ),
    )
    .await?;
    put.set_is_idempotent(true);
    let mut delete =
        prepare(session, levels, format!("DELETE FROM {t} USING TIMESTAMP ? WHERE p = ? AND c = ?")).await?;
    delete.set_is_idempotent(true);
    Ok(ViewTable {
        shared,
        get: prepare(session, levels, format!("SELECT body, rev, marks FROM {t} WHERE p = ? AND c = ?"))
            .await?,
        scans,
        put,
        delete,
        insert_if_absent: prepare(
            session,
            levels,
            format!("INSERT INTO {t} (p, c, body, rev, marks) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"),
        )
        .await?,
        update_if: prepare(
            session,
            levels,
            format!("UPDATE {t} SET body = ?, rev = ?, marks = marks + ? WHERE p = ? AND c = ? IF rev = ?"),
        )
        .await?,
        delete_if: prepare(session, levels, format!("DELETE FROM {t} WHERE p = ? AND c = ? IF rev = ?"))
            .await?,
        revision_serial: prepare_serial(
            session,
            levels,
            format!("SELECT rev FROM {t} WHERE p = ? AND c = ?"),
        )
        .await?,
    })
}

pub(super) async fn prepare_common(
    session: &Session,
    levels: Levels,
    keyspace: &str,
) -> Result<Statements, ReadStoreError> {
    let checkpoint =
        format!("SELECT position, source_offset FROM {keyspace}.checkpoints WHERE projection = ? AND source_partition = ?");
    Ok(Statements {
        checkpoint: prepare(session, levels, checkpoint.clone()).await?,
        checkpoint_serial: prepare_serial(session, levels, checkpoint).await?,
        checkpoints: prepare(
            session,
            levels,
            format!("SELECT source_partition, position, source_offset FROM {keyspace}.checkpoints WHERE projection = ?"),
        )
        .await?,
        checkpoint_insert: prepare(
            session,
            levels,
            format!(
                "INSERT INTO {keyspace}.checkpoints (projection, source_partition, position, source_offset) \
                 VALUES (?, ?, ?, ?) IF NOT EXISTS"
            ),
        )
        .await?,
        checkpoint_update: prepare(
            session,
            levels,
            format!(
                "UPDATE {keyspace}.checkpoints SET position = ?, source_offset = ? \
                 WHERE projection = ? AND source_partition = ? IF position = ? AND source_offset = ?"
            ),
        )
        .await?,
        dead_letter_insert: prepare(
            session,
            levels,
            format!(
                "INSERT INTO {keyspace}.dead_letters (projection, position, event_id, event_type, error) \
                 VALUES (?, ?, ?, ?, ?)"
            ),
        )
        .await?,
        dead_letters: prepare(
            session,
            levels,
            format!("SELECT position, event_id, event_type, error FROM {keyspace}.dead_letters WHERE projection = ?"),
        )
        .await?,
    })
}
