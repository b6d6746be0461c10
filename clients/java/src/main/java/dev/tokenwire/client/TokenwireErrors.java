package dev.tokenwire.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.RetryInfo;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** Decodes the details of a failed tokenwire call (a StatusRuntimeException). */
public final class TokenwireErrors {
  /** The trailer every tokenwire response carries (the client's own id when it sends one). */
  public static final Metadata.Key<String> REQUEST_ID =
      Metadata.Key.of("x-request-id", Metadata.ASCII_STRING_MARSHALLER);

  /** One entry of a google.rpc.BadRequest: the request field at fault and why. */
  public record FieldViolation(String field, String description) {}

  private TokenwireErrors() {}

  /** The status code of a failed call. */
  public static Status.Code code(Throwable t) {
    return Status.fromThrowable(t).getCode();
  }

  /** The google.rpc.BadRequest field violations of an INVALID_ARGUMENT (empty if none). */
  public static List<FieldViolation> fieldViolations(Throwable t) {
    List<FieldViolation> out = new ArrayList<>();
    for (Any detail : details(t)) {
      if (detail.is(BadRequest.class)) {
        for (BadRequest.FieldViolation v : unpack(detail, BadRequest.class).getFieldViolationsList()) {
          out.add(new FieldViolation(v.getField(), v.getDescription()));
        }
      }
    }
    return out;
  }

  /** The description of the violation of field ("sampling.top_p", "ids[2]"), if any. */
  public static Optional<String> fieldViolation(Throwable t, String field) {
    return fieldViolations(t).stream().filter(v -> v.field().equals(field))
        .map(FieldViolation::description).findFirst();
  }

  /** The google.rpc.RetryInfo delay of a RESOURCE_EXHAUSTED, if any. */
  public static Optional<Duration> retryDelay(Throwable t) {
    for (Any detail : details(t)) {
      if (detail.is(RetryInfo.class)) {
        com.google.protobuf.Duration d = unpack(detail, RetryInfo.class).getRetryDelay();
        return Optional.of(Duration.ofSeconds(d.getSeconds(), d.getNanos()));
      }
    }
    return Optional.empty();
  }

  /** The x-request-id trailer of a failed call: quote it in bug reports. */
  public static Optional<String> requestId(Throwable t) {
    Metadata trailers = Status.trailersFromThrowable(t);
    return Optional.ofNullable(trailers == null ? null : trailers.get(REQUEST_ID));
  }

  private static List<Any> details(Throwable t) {
    com.google.rpc.Status status = StatusProto.fromThrowable(t);
    return status == null ? List.of() : status.getDetailsList();
  }

  private static <T extends com.google.protobuf.Message> T unpack(Any any, Class<T> type) {
    try {
      return any.unpack(type);
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalArgumentException("malformed " + type.getSimpleName() + " detail", e);
    }
  }
}
