//! The managed device client (feature `client`): one task owns the connection.
