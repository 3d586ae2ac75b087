//! How the operator tools that speak CQL (`ringdb status`, `ringdb bench`) log in to a cluster
//! that runs with `authenticator: password`: `-u/--username` and `-p/--password`, or the
//! password from `RINGDB_PASSWORD` (which, unlike an argument, other users cannot read from the
//! process list). The tools send the credentials only when the server asks for them.

use ringdb_cql::client::Credentials;

/// Login options shared by the CQL-speaking tools (`#[command(flatten)]`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoginArgs {
    /// Role to log in as, for a cluster with authentication.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Its password (else the RINGDB_PASSWORD environment variable is used).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
}

/// The environment variable a password may come from instead of `-p`.
pub const PASSWORD_ENV: &str = "RINGDB_PASSWORD";

impl LoginArgs {
    /// The credentials to offer, `None` without a user name; `-p` without `-u`, or a user name
    /// with no password from either `-p` or `RINGDB_PASSWORD`, is an error.
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        self.credentials_with(std::env::var(PASSWORD_ENV).ok())
    }

    /// [`LoginArgs::credentials`] with the environment's password given.
    fn credentials_with(
        &self,
        env_password: Option<String>,
    ) -> anyhow::Result<Option<Credentials>> {
        match (&self.username, &self.password) {
            // RINGDB_PASSWORD alone (set for another tool) is not an error.
            (None, None) => Ok(None),
            (None, Some(_)) => anyhow::bail!("--password needs --username"),
            (Some(user), password) => match password.clone().or(env_password) {
                Some(password) => Ok(Some(Credentials {
                    username: user.clone(),
                    password,
                })),
                None => {
                    anyhow::bail!("no password for {user}: give --password or set {PASSWORD_ENV}")
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(username: Option<&str>, password: Option<&str>) -> LoginArgs {
        LoginArgs {
            username: username.map(str::to_string),
            password: password.map(str::to_string),
        }
    }

    #[test]
    fn credentials_need_both_halves() {
        assert_eq!(args(None, None).credentials().expect("none"), None);
        let both = args(Some("ops"), Some("s3cret"))
            .credentials()
            .expect("both")
            .expect("some");
        assert_eq!(
            (both.username.as_str(), both.password.as_str()),
            ("ops", "s3cret")
        );
        let e = args(Some("ops"), None)
            .credentials_with(None)
            .expect_err("no password");
        assert!(e.to_string().contains("RINGDB_PASSWORD"), "{e}");
    }

    #[test]
    fn the_environment_gives_a_password_but_never_excuses_a_lone_p() {
        let env = || Some("from-env".to_string());
        assert_eq!(
            args(None, None).credentials_with(env()).expect("none"),
            None
        );
        let e = args(None, Some("typed"))
            .credentials_with(env())
            .expect_err("-p without -u");
        assert!(e.to_string().contains("--username"), "{e}");
        let from_env = args(Some("ops"), None)
            .credentials_with(env())
            .expect("env")
            .expect("some");
        assert_eq!(from_env.password, "from-env");
        let typed = args(Some("ops"), Some("typed"))
            .credentials_with(env())
            .expect("typed")
            .expect("some");
        assert_eq!(typed.password, "typed", "-p wins over the environment");
    }
}
