//! The real servers `scripts/install-real-servers` installs: nginx by hand
//! (`nginx_smoke`), nginx through `hotreload-core` (`nginx_library`), unicorn and gunicorn
//! through the CLI (`unicorn_gunicorn`). A test whose server is missing is ignored (see
//! `tests/build.rs`), unless CI or `HOTRELOAD_REQUIRE_REAL_SERVERS=1` requires it.

mod nginx_library;
mod nginx_smoke;
mod unicorn_gunicorn;
