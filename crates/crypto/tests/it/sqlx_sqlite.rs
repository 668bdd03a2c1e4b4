//! `Encrypted<T>` as a SQLite `BLOB` through sqlx.

use keyward_crypto::{BlindIndex, CryptoError, Encrypted, EncryptionContext, Keyring};
use sqlx::{Connection, Row, SqliteConnection};

async fn connect() -> SqliteConnection {
    let mut db = SqliteConnection::connect("sqlite::memory:")
        .await
        .expect("open in-memory database");
    sqlx::query("CREATE TABLE users (id INTEGER PRIMARY KEY, email BLOB NOT NULL, email_index BLOB NOT NULL)")
        .execute(&mut db)
        .await
        .expect("create table");
    db
}

#[tokio::test]
async fn encrypted_column_round_trips() {
    let keyring = Keyring::generate().expect("generate keyring");
    let context = EncryptionContext::new("users", "email", "1");
    let email = Encrypted::seal(&keyring, &"ada@example.com".to_owned(), &context).expect("seal");
    let index = BlindIndex::for_column(&keyring, "users", "email").expect("names");
    let mut db = connect().await;

    sqlx::query("INSERT INTO users (id, email, email_index) VALUES (1, ?, ?)")
        .bind(&email)
        .bind(index.compute(b"ada@example.com"))
        .execute(&mut db)
        .await
        .expect("insert");
    let stored: Encrypted<String> =
        sqlx::query_scalar("SELECT email FROM users WHERE email_index = ?")
            .bind(index.compute(b"ada@example.com"))
            .fetch_one(&mut db)
            .await
            .expect("select by index");

    assert_eq!(stored, email);
    assert_eq!(
        stored.open(&keyring, &context).expect("open"),
        "ada@example.com"
    );
}

#[tokio::test]
async fn column_type_is_blob() {
    let keyring = Keyring::generate().expect("generate keyring");
    let context = EncryptionContext::new("users", "email", "1");
    let email = Encrypted::seal(&keyring, &"ada@example.com".to_owned(), &context).expect("seal");
    let mut db = connect().await;

    sqlx::query("INSERT INTO users (id, email, email_index) VALUES (1, ?, x'00')")
        .bind(email.clone())
        .execute(&mut db)
        .await
        .expect("insert by value");
    let row = sqlx::query("SELECT typeof(email) AS kind, email FROM users")
        .fetch_one(&mut db)
        .await
        .expect("select");

    assert_eq!(row.get::<String, _>("kind"), "blob");
    assert_eq!(row.get::<Vec<u8>, _>("email"), email.as_bytes());
}

#[tokio::test]
async fn malformed_blob_fails_to_decode() {
    let mut db = connect().await;
    sqlx::query("INSERT INTO users (id, email, email_index) VALUES (1, x'0900', x'00')")
        .execute(&mut db)
        .await
        .expect("insert");

    let result = sqlx::query_scalar::<_, Encrypted<String>>("SELECT email FROM users")
        .fetch_one(&mut db)
        .await;

    let error = result.expect_err("an unknown format must not decode");
    let source = std::error::Error::source(&error).expect("decode error has a source");
    assert!(
        matches!(
            source.downcast_ref::<CryptoError>(),
            Some(CryptoError::UnsupportedFormat(0x09))
        ),
        "{error}"
    );
}
