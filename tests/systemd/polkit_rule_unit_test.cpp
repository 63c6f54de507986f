// `storewatch config polkit`'s pieces: which units a config lets the service
// restart, and the rule text for them (polkit_rule_test.sh has polkitd judge it).
#include "agent/polkit_rule.h"

#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "config/config.h"
#include "probes/registry.h"
#include "tests/support/support.h"

namespace storewatch::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr const char* kBase = R"([store]
id = "store-0042"
name = "Springfield"

[agent]
data_dir = "/tmp/storewatch-polkit-test"

[sync]
broker = "tcp://127.0.0.1:1883"

[[probe]]
name = "printer-01"
type = "tcp"
host = "10.20.1.31"
port = 9100
)";

config::Config load(const std::string& remediations) {
  auto loaded =
      config::load_string(std::string(kBase) + remediations, "test.toml", probes::schemas());
  std::string errors;
  for (const auto& d : loaded.diagnostics) errors += d.message + "\n";
  EXPECT_TRUE(loaded.ok()) << errors;
  return loaded.ok() ? std::move(*loaded.config) : config::Config{};
}

TEST(PolkitRule, UnitsOfSystemdRestartRemediationsOnlySortedOnce) {
  auto cfg = load(R"(
[[remediation]]
name = "restart-spooler"
type = "systemd-restart"
unit = "printer-spooler"

[[remediation]]
name = "restart-pos-sync"
type = "systemd-restart"
unit = "pos-sync.service"

[[remediation]]
name = "restart-spooler-again"
type = "systemd-restart"
unit = "printer-spooler.service"

[[remediation]]
name = "reset-lane"
type = "exec"
command = ["/bin/true"]

[[remediation]]
name = "restart-server"
type = "http"
url = "http://10.20.0.10/restart"
)");
  EXPECT_THAT(restart_units(cfg), ElementsAre("pos-sync.service", "printer-spooler.service"));
}

TEST(PolkitRule, NamesTheUnitsTheUserAndTheRestartVerb) {
  const std::string rule =
      polkit_rule({"pos-sync.service", R"(fsck@dev-disk-by\x2dlabel.service)"});
  EXPECT_THAT(rule, HasSubstr(R"(action.id !== "org.freedesktop.systemd1.manage-units")"));
  EXPECT_THAT(rule, HasSubstr(R"(subject.user !== "storewatch")"));
  EXPECT_THAT(rule, HasSubstr(R"(action.lookup("verb") === "restart")"));
  // A backslash in a unit name is escaped once, as a JavaScript string needs.
  EXPECT_THAT(rule, HasSubstr("  var units = [\n    \"pos-sync.service\",\n"
                              "    \"fsck@dev-disk-by\\\\x2dlabel.service\"\n  ];\n"));
  EXPECT_THAT(rule, HasSubstr("return polkit.Result.YES;"));
  EXPECT_THAT(rule, HasSubstr("return polkit.Result.NO;"));
  EXPECT_EQ(rule, polkit_rule({"pos-sync.service", R"(fsck@dev-disk-by\x2dlabel.service)"}));
}

TEST(PolkitRule, NoUnitsAllowsNothing) {
  auto cfg = load("");
  EXPECT_THAT(restart_units(cfg), IsEmpty());
  const std::string rule = polkit_rule(restart_units(cfg));
  EXPECT_THAT(rule, HasSubstr("  var units = [];\n"));
  EXPECT_THAT(rule, Not(HasSubstr(".service\"")));
}

TEST(PolkitRule, AnotherUser) {
  EXPECT_THAT(polkit_rule({"a.service"}, "pos-agent"),
              HasSubstr(R"(subject.user !== "pos-agent")"));
}

TEST(PolkitRule, WrittenAtOnceWithMode0644) {
  test::TempDir dir;
  const auto path = dir / "50-storewatch.rules";
  test::write_file(path, "old rule\n");
  ::chmod(path.c_str(), 0600);
  ASSERT_TRUE(write_polkit_rule(path, "new rule\n"));
  EXPECT_EQ(test::read_file(path), "new rule\n");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  // Only the rule is left in the directory: no temporary file.
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
}

TEST(PolkitRule, AFailedWriteSaysWhyAndLeavesNothing) {
  test::TempDir dir;
  auto w = write_polkit_rule(dir / "missing" / "50-storewatch.rules", "rule\n");
  ASSERT_FALSE(w);
  EXPECT_THAT(w.error().message, HasSubstr("missing"));
  // A directory in the way of the rename: the old entry stays, no temporary file.
  std::filesystem::create_directory(dir / "50-storewatch.rules");
  w = write_polkit_rule(dir / "50-storewatch.rules", "rule\n");
  ASSERT_FALSE(w);
  EXPECT_THAT(w.error().message, HasSubstr("cannot replace"));
  EXPECT_TRUE(std::filesystem::is_directory(dir / "50-storewatch.rules"));
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
}

}  // namespace
}  // namespace storewatch::agent
