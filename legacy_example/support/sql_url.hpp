#pragma once
/// @file
/// The database URL that --inventory and legacy_inventory_load take, in the syntax
/// fiberloop::SqlDatabase accepts (so the fiber program is given the same string):
///   sqlite:PATH
///   mysql://user:password@host:port/database   (also mariadb://; port 3306 when
///                                               omitted; user and password may be
///                                               percent-encoded; host may be [v6])
/// No fiberloop and no driver here.

#include <cstdint>
#include <string>
#include <string_view>

namespace legacy {

struct SqlUrl {
  enum class Driver { sqlite, mariadb };
  Driver driver = Driver::sqlite;
  std::string path;  ///< sqlite: the database file
  std::string user, password, host, database;  ///< mariadb
  std::uint16_t port = 3306;
};

/// Parses `url`; throws std::invalid_argument saying what is wrong. "sqlite::memory:"
/// is refused: a private in-memory database holds no inventory.
SqlUrl parse_sql_url(std::string_view url);

}  // namespace legacy
