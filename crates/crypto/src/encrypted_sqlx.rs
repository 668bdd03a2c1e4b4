//! sqlx support for [`Encrypted<T>`]: the ciphertext binds and reads as the database's byte
//! string type, `BLOB` in SQLite and `BYTEA` in PostgreSQL.
//!
//! The impls delegate to sqlx's own `Vec<u8>` impls, so they apply to every database on which
//! sqlx supports byte strings. The cargo features `sqlx-sqlite` and `sqlx-postgres` choose
//! which drivers are compiled. Decoding checks the header only: [`Encrypted::open`] does the
//! authentication.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

use crate::Encrypted;

impl<T, DB: Database> Type<DB> for Encrypted<T>
where
    Vec<u8>: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <Vec<u8> as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <Vec<u8> as Type<DB>>::compatible(ty)
    }
}

impl<'q, T, DB: Database> Encode<'q, DB> for Encrypted<T>
where
    Vec<u8>: Encode<'q, DB>,
{
    fn encode(self, buf: &mut DB::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
        self.into_bytes().encode(buf)
    }

    fn encode_by_ref(&self, buf: &mut DB::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
        self.bytes().encode_by_ref(buf)
    }

    fn size_hint(&self) -> usize {
        self.as_bytes().len()
    }
}

impl<'r, T, DB: Database> Decode<'r, DB> for Encrypted<T>
where
    Vec<u8>: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let bytes = <Vec<u8> as Decode<'r, DB>>::decode(value)?;
        Ok(Encrypted::from_bytes(bytes)?)
    }
}
