//! Field encryption against SQLite: a `users` table whose `email` column is encrypted and
//! searchable through a blind index, a data-key rotation, and a migration of every row onto
//! the new key.
//!
//! Run with `cargo run -p keyward-crypto --example users --features sqlx-sqlite`. The emails
//! are made up; a real program would never print decrypted values.

use keyward_crypto::{BlindIndex, Encrypted, EncryptionContext, Keyring, Zeroizing};
use sqlx::{Connection, SqliteConnection};

type Error = Box<dyn std::error::Error>;

const USERS: [(i64, &str); 3] = [
    (1, "ada@example.com"),
    (2, "Grace.Hopper@Example.com"),
    (3, "alan@example.org"),
];

/// Returns the context of a user's email: the column and the row's primary key.
fn email_context(id: i64) -> EncryptionContext {
    EncryptionContext::new("users", "email", id.to_string())
}

/// Creates the blind index of the email column. Emails are compared case-insensitively, so the
/// index hashes them trimmed and lowercased.
fn email_index(keyring: &Keyring) -> Result<BlindIndex, Error> {
    let index = BlindIndex::for_column(keyring, "users", "email")?
        .with_normalizer(|email| Zeroizing::new(email.trim_ascii().to_ascii_lowercase()));
    Ok(index)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut keyring = Keyring::generate()?;
    let mut db = SqliteConnection::connect("sqlite::memory:").await?;
    sqlx::query(
        "CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            email BLOB NOT NULL,
            email_index BLOB NOT NULL
        )",
    )
    .execute(&mut db)
    .await?;
    sqlx::query("CREATE INDEX users_email_index ON users (email_index)")
        .execute(&mut db)
        .await?;
    println!("created table users (email encrypted, email_index for lookups)");

    insert_users(&keyring, &mut db).await?;
    find_by_email(&keyring, &mut db, "GRACE.hopper@example.com").await?;

    let new_key = keyring.rotate()?;
    println!("rotated the keyring: data key {new_key} is now active");
    find_by_email(&keyring, &mut db, "ada@example.com").await?;

    migrate_emails(&keyring, &mut db).await?;
    show_all(&keyring, &mut db).await?;
    find_by_email(&keyring, &mut db, "alan@example.org").await?;
    find_by_email(&keyring, &mut db, "nobody@example.com").await?;

    copy_email_between_rows(&keyring, &mut db).await?;
    Ok(())
}

async fn insert_users(keyring: &Keyring, db: &mut SqliteConnection) -> Result<(), Error> {
    let index = email_index(keyring)?;

    for (id, email) in USERS {
        let sealed = Encrypted::seal(keyring, &email.to_owned(), &email_context(id))?;
        sqlx::query("INSERT INTO users (id, email, email_index) VALUES (?, ?, ?)")
            .bind(id)
            .bind(&sealed)
            .bind(index.compute(email.as_bytes()))
            .execute(&mut *db)
            .await?;
        println!(
            "inserted user {id}: {} ciphertext bytes under data key {}",
            sealed.as_bytes().len(),
            sealed.key_id()
        );
    }
    Ok(())
}

async fn find_by_email(
    keyring: &Keyring,
    db: &mut SqliteConnection,
    email: &str,
) -> Result<(), Error> {
    let index = email_index(keyring)?;
    let found: Option<(i64, Encrypted<String>)> =
        sqlx::query_as("SELECT id, email FROM users WHERE email_index = ?")
            .bind(index.compute(email.as_bytes()))
            .fetch_optional(&mut *db)
            .await?;

    match found {
        Some((id, sealed)) => {
            let stored = sealed.open(keyring, &email_context(id))?;
            println!(
                "lookup {email:?}: user {id}, stored as {stored:?} under data key {}",
                sealed.key_id()
            );
        }
        None => println!("lookup {email:?}: no user"),
    }
    Ok(())
}

/// Re-encrypts every email that is not yet under the active key. The blind index does not
/// change, because its key is independent of the data keys.
async fn migrate_emails(keyring: &Keyring, db: &mut SqliteConnection) -> Result<(), Error> {
    let rows: Vec<(i64, Encrypted<String>)> = sqlx::query_as("SELECT id, email FROM users")
        .fetch_all(&mut *db)
        .await?;

    let mut moved = 0;
    for (id, sealed) in rows {
        if !sealed.needs_rewrap(keyring) {
            continue;
        }
        let rewrapped = sealed.rewrap(keyring, &email_context(id))?;
        sqlx::query("UPDATE users SET email = ? WHERE id = ?")
            .bind(&rewrapped)
            .bind(id)
            .execute(&mut *db)
            .await?;
        println!(
            "migrated user {id}: data key {} -> {}",
            sealed.key_id(),
            rewrapped.key_id()
        );
        moved += 1;
    }
    println!(
        "migration done: {moved} rows moved to data key {}",
        keyring.active_key_id()
    );
    Ok(())
}

async fn show_all(keyring: &Keyring, db: &mut SqliteConnection) -> Result<(), Error> {
    let rows: Vec<(i64, Encrypted<String>)> =
        sqlx::query_as("SELECT id, email FROM users ORDER BY id")
            .fetch_all(&mut *db)
            .await?;

    for (id, sealed) in rows {
        let email = sealed.open(keyring, &email_context(id))?;
        println!("user {id}: {email} (data key {})", sealed.key_id());
    }
    Ok(())
}

/// Copies user 1's email ciphertext into user 3's row, as an attacker with write access to
/// the database might, and shows that it does not open there.
async fn copy_email_between_rows(
    keyring: &Keyring,
    db: &mut SqliteConnection,
) -> Result<(), Error> {
    sqlx::query("UPDATE users SET email = (SELECT email FROM users WHERE id = 1) WHERE id = 3")
        .execute(&mut *db)
        .await?;
    let copied: Encrypted<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = 3")
        .fetch_one(&mut *db)
        .await?;

    match copied.open(keyring, &email_context(3)) {
        Ok(_) => Err("user 1's email opened in row 3".into()),
        Err(err) => {
            println!("copied user 1's email into row 3: it does not open there ({err})");
            Ok(())
        }
    }
}
