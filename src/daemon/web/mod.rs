//! The web side of the daemon: jobwarden's own listener ([`server`]), the routes of the API
//! and the pages ([`http`]), and the console's templates ([`console`]). It reads the
//! [`state`](crate::daemon::state) the scan loop publishes and sends the loop requests; it
//! never names the loop.

pub(crate) mod console;
pub(crate) mod http;
pub(crate) mod server;
