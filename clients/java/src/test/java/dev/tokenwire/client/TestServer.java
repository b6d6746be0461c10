package dev.tokenwire.client;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A real `tokenwire serve --demo --port 0`, as a user runs it; the port is read from its
 * "tokenwire serving on HOST:PORT" line. The executable is the system property
 * tokenwire.bin (or $TOKENWIRE_BIN), else the repository's .venv/bin/tokenwire; demo models
 * are built into tokenwire.demo.dir (or $TOKENWIRE_DEMO_DIR), else a temporary directory.
 */
final class TestServer implements AutoCloseable {
  private static final Pattern SERVING = Pattern.compile("tokenwire serving on ([\\d.]+):(\\d+)");

  final String target;
  /** Everything the server printed so far. */
  final List<String> output;
  private final Process process;
  private final Path tempDir;

  private TestServer(Process process, Path tempDir, String target, List<String> output) {
    this.process = process;
    this.tempDir = tempDir;
    this.target = target;
    this.output = output;
  }

  static TestServer start() throws Exception {
    Path tempDir = null;
    String demoDir = setting("tokenwire.demo.dir", "TOKENWIRE_DEMO_DIR");
    if (demoDir == null) {
      tempDir = Files.createTempDirectory("tokenwire-java-demo-");
      demoDir = tempDir.toString();
    }
    Process p = new ProcessBuilder(executable(), "serve", "--demo", "--demo-dir", demoDir,
        "--host", "127.0.0.1", "--port", "0").redirectErrorStream(true).start();
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    CompletableFuture<String> target = new CompletableFuture<>();
    Thread reader = new Thread(() -> {
      try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
        for (String line; (line = r.readLine()) != null; ) {
          lines.add(line);
          Matcher m = SERVING.matcher(line);
          if (m.find()) {
            target.complete(m.group(1) + ":" + m.group(2));
          }
        }
      } catch (IOException ignored) {
        // the process ended
      }
      target.completeExceptionally(new IllegalStateException("tokenwire serve exited:\n" + String.join("\n", lines)));
    }, "tokenwire-serve-output");
    reader.setDaemon(true);
    reader.start();
    try {
      return new TestServer(p, tempDir, target.get(3, TimeUnit.MINUTES), lines);
    } catch (Exception e) {
      p.destroyForcibly();
      throw e;
    }
  }

  private static String setting(String property, String env) {
    String v = System.getProperty(property);
    if (v == null || v.isBlank()) {
      v = System.getenv(env);
    }
    return v == null || v.isBlank() ? null : v;
  }

  private static String executable() {
    String bin = setting("tokenwire.bin", "TOKENWIRE_BIN");
    if (bin != null) {
      return bin;
    }
    for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
      Path candidate = dir.resolve(".venv/bin/tokenwire");
      if (Files.isExecutable(candidate)) {
        return candidate.toString();
      }
    }
    throw new IllegalStateException(
        "tokenwire executable not found: set TOKENWIRE_BIN or run `make install` at the repository root");
  }

  @Override
  public void close() throws Exception {
    process.destroy(); // SIGTERM: the server drains and exits
    if (!process.waitFor(30, TimeUnit.SECONDS)) {
      process.destroyForcibly().waitFor();
    }
    if (tempDir != null) {
      try (Stream<Path> paths = Files.walk(tempDir)) {
        paths.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
      }
    }
  }
}
