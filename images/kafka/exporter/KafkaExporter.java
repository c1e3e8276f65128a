package io.stackforge.kafka;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;

/**
 * Kafka's consumer-group lag and topic offsets in the Prometheus text format.
 *
 * <p>The operator's Kafka pods carry an exporter sidecar started as {@code
 * /bin/kafka_exporter --kafka.server=HOST:PORT --web.listen-address=:PORT}, the command
 * line of the community kafka_exporter, and the tenant's alert reads its {@code
 * kafka_consumergroup_lag}. That exporter cannot be built here, so the project's Kafka
 * image carries this one: the same flags and the same metric names for what the
 * operator uses, computed at each scrape through Kafka's Admin API.
 */
public final class KafkaExporter {
  private static final long ADMIN_TIMEOUT_SECONDS = 10;

  private KafkaExporter() {}

  /** The command line: repeatable {@code --kafka.server}, one {@code --web.listen-address}. */
  record Options(List<String> servers, String host, int port) {
    static Options parse(String[] args) {
      List<String> servers = new ArrayList<>();
      String listen = ":9308";
      for (String arg : args) {
        if (arg.startsWith("--kafka.server=")) {
          servers.add(arg.substring("--kafka.server=".length()));
        } else if (arg.startsWith("--web.listen-address=")) {
          listen = arg.substring("--web.listen-address=".length());
        } else {
          throw new IllegalArgumentException(
              "unknown argument " + arg + "; want --kafka.server=HOST:PORT (repeatable) and "
                  + "--web.listen-address=[HOST]:PORT");
        }
      }
      if (servers.isEmpty()) {
        servers.add("localhost:9092");
      }
      int colon = listen.lastIndexOf(':');
      if (colon < 0) {
        throw new IllegalArgumentException("--web.listen-address wants [HOST]:PORT, got " + listen);
      }
      String host = colon == 0 ? "0.0.0.0" : listen.substring(0, colon);
      return new Options(servers, host, Integer.parseInt(listen.substring(colon + 1)));
    }
  }

  public static void main(String[] args) throws IOException {
    Options options;
    try {
      options = Options.parse(args);
    } catch (IllegalArgumentException error) {
      System.err.println("kafka_exporter: " + error.getMessage());
      System.exit(2);
      return;
    }
    Properties config = new Properties();
    config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, String.join(",", options.servers()));
    config.put(AdminClientConfig.CLIENT_ID_CONFIG, "stackforge-kafka-exporter");
    config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
    config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "9000");
    Admin admin = Admin.create(config);

    HttpServer server = HttpServer.create(new InetSocketAddress(options.host(), options.port()), 0);
    server.createContext("/metrics", exchange -> respond(exchange, 200, scrape(admin)));
    server.createContext("/", exchange -> respond(exchange, 404, "see /metrics\n"));
    server.start();
    System.err.printf("kafka_exporter: serving /metrics on %s:%d for %s%n",
        options.host(), options.port(), String.join(",", options.servers()));
  }

  private static void respond(HttpExchange exchange, int status, String body) throws IOException {
    byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
    exchange.getResponseHeaders().set("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    exchange.sendResponseHeaders(status, bytes.length);
    try (OutputStream out = exchange.getResponseBody()) {
      out.write(bytes);
    }
  }

  /** Every metric, or only the failed-scrape gauge when Kafka does not answer in time. */
  static String scrape(Admin admin) {
    Metrics metrics = new Metrics();
    try {
      collect(admin, metrics);
      metrics.gauge("kafka_exporter_scrape_success", "Whether Kafka answered this scrape.",
          Map.of(), 1);
      return metrics.text();
    } catch (ExecutionException | TimeoutException error) {
      return failed("kafka_exporter: scrape failed: " + error);
    } catch (InterruptedException error) {
      Thread.currentThread().interrupt();
      return failed("kafka_exporter: scrape interrupted");
    }
  }

  private static String failed(String why) {
    System.err.println(why);
    Metrics metrics = new Metrics();
    metrics.gauge("kafka_exporter_scrape_success", "Whether Kafka answered this scrape.",
        Map.of(), 0);
    return metrics.text();
  }

  private static <T> T await(org.apache.kafka.common.KafkaFuture<T> future)
      throws ExecutionException, InterruptedException, TimeoutException {
    return future.get(ADMIN_TIMEOUT_SECONDS, TimeUnit.SECONDS);
  }

  private static void collect(Admin admin, Metrics metrics)
      throws ExecutionException, InterruptedException, TimeoutException {
    int brokers = await(admin.describeCluster().nodes()).size();
    metrics.gauge("kafka_brokers", "Brokers in the cluster.", Map.of(), brokers);

    Set<String> topics = await(admin.listTopics().names());
    Map<String, TopicDescription> described = await(admin.describeTopics(topics).allTopicNames());
    Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
    for (TopicDescription topic : new TreeMap<>(described).values()) {
      metrics.gauge("kafka_topic_partitions", "Partitions of the topic.",
          Map.of("topic", topic.name()), topic.partitions().size());
      for (TopicPartitionInfo partition : topic.partitions()) {
        latest.put(new TopicPartition(topic.name(), partition.partition()), OffsetSpec.latest());
      }
    }
    Map<TopicPartition, ListOffsetsResultInfo> ends =
        latest.isEmpty() ? Map.of() : await(admin.listOffsets(latest).all());
    for (Map.Entry<TopicPartition, ListOffsetsResultInfo> end : sorted(ends).entrySet()) {
      metrics.gauge("kafka_topic_partition_current_offset",
          "The partition's log end offset.", partitionLabels(end.getKey()),
          end.getValue().offset());
    }

    for (GroupListing group : await(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all())) {
      Map<TopicPartition, OffsetAndMetadata> committed =
          await(admin.listConsumerGroupOffsets(group.groupId()).partitionsToOffsetAndMetadata());
      for (Map.Entry<TopicPartition, OffsetAndMetadata> entry : sorted(committed).entrySet()) {
        if (entry.getValue() == null) {
          continue; // nothing committed for this partition yet
        }
        Map<String, String> labels = new TreeMap<>(partitionLabels(entry.getKey()));
        labels.put("consumergroup", group.groupId());
        long offset = entry.getValue().offset();
        metrics.gauge("kafka_consumergroup_current_offset",
            "The group's committed offset in the partition.", labels, offset);
        ListOffsetsResultInfo end = ends.get(entry.getKey());
        if (end != null) {
          metrics.gauge("kafka_consumergroup_lag",
              "Messages in the partition the group has not committed yet.", labels,
              Math.max(0, end.offset() - offset));
        }
      }
    }
  }

  private static <V> Map<TopicPartition, V> sorted(Map<TopicPartition, V> map) {
    Map<TopicPartition, V> out = new TreeMap<>((a, b) -> a.topic().equals(b.topic())
        ? Integer.compare(a.partition(), b.partition()) : a.topic().compareTo(b.topic()));
    out.putAll(map);
    return out;
  }

  private static Map<String, String> partitionLabels(TopicPartition partition) {
    return Map.of("topic", partition.topic(), "partition", Integer.toString(partition.partition()));
  }

  /**
   * Gauges in the text format: each family's HELP and TYPE once, and its samples together
   * (the format wants a family's lines in one group), families in the order first seen.
   */
  static final class Metrics {
    private final Map<String, StringBuilder> families = new java.util.LinkedHashMap<>();

    void gauge(String name, String help, Map<String, String> labels, long value) {
      StringBuilder family = families.computeIfAbsent(name, n ->
          new StringBuilder("# HELP " + n + " " + help + "\n# TYPE " + n + " gauge\n"));
      family.append(name);
      if (!labels.isEmpty()) {
        List<String> pairs = new ArrayList<>();
        for (Map.Entry<String, String> label : new TreeMap<>(labels).entrySet()) {
          pairs.add(label.getKey() + "=\"" + escape(label.getValue()) + "\"");
        }
        family.append('{').append(String.join(",", pairs)).append('}');
      }
      family.append(' ').append(value).append('\n');
    }

    String text() {
      return String.join("", families.values());
    }

    static String escape(String value) {
      return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
    }
  }
}
