// The Java half of the codec cross-check (tests/compat/codec-java): kafka-clients 4.1.1's own
// generated message classes (org.apache.kafka.common.message.*Data) are the reference.
//
//   java CodecCheck FWD REV
//
// Forward: every line of FWD (written by codec_dump emit: "<key> <req|resp> <version> <seed>
// <hex>", key -1 = the request/response header) is read by the Java message class at that
// version; every byte must be consumed, no tagged field may be unknown to Java, and Java's
// re-encoding at the same version must equal our bytes. Versions Java does not support are
// skipped and counted.
//
// Reverse: for every (message, version) of FWD that Java supports, Java builds messages of its
// own (every field Java can write at that version set through the generated setters, values
// chosen as randomScalar says; odd seeds set nullable fields to null), encodes them, and writes them to REV in the same line format, for codec_dump check
// to decode and re-encode.
//
// Exit status 0 only if no message differs.

import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.TreeSet;

import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.message.ApiMessageType;
import org.apache.kafka.common.message.RequestHeaderData;
import org.apache.kafka.common.message.ResponseHeaderData;
import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.Message;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.common.record.BaseRecords;
import org.apache.kafka.common.record.MemoryRecords;

public class CodecCheck {
    static final int REVERSE_SEEDS = 8;

    // ---- message kinds ----------------------------------------------------------------------

    static Message newMessage(short key, boolean response) {
        if (key == -1)
            return response ? new ResponseHeaderData() : new RequestHeaderData();
        ApiMessageType t = ApiMessageType.fromApiKey(key);
        return response ? t.newResponse() : t.newRequest();
    }

    static String kindName(short key, boolean response) {
        if (key == -1)
            return response ? "ResponseHeader" : "RequestHeader";
        String n = newMessage(key, response).getClass().getSimpleName();
        return n.endsWith("Data") ? n.substring(0, n.length() - 4) : n;
    }

    // ---- encoding helpers -------------------------------------------------------------------

    static byte[] encode(Message m, short v) {
        ObjectSerializationCache cache = new ObjectSerializationCache();
        int n = m.size(cache, v);
        ByteBuffer out = ByteBuffer.allocate(n);
        m.write(new ByteBufferAccessor(out), cache, v);
        if (out.position() != n)
            throw new IllegalStateException("Java wrote " + out.position() + " of size " + n);
        return out.array();
    }

    static boolean writable(Message root, short v) {
        try {
            encode(root, v);
            return true;
        } catch (RuntimeException e) {
            return false;
        }
    }

    static byte[] unhex(String s) {
        if (s.equals("-"))
            return new byte[0];
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++)
            b[i] = (byte) (Character.digit(s.charAt(2 * i), 16) << 4 | Character.digit(s.charAt(2 * i + 1), 16));
        return b;
    }

    static String hex(byte[] b) {
        if (b.length == 0)
            return "-";
        char[] digits = "0123456789abcdef".toCharArray();
        char[] out = new char[b.length * 2];
        for (int i = 0; i < b.length; i++) {
            out[2 * i] = digits[(b[i] >> 4) & 0xf];
            out[2 * i + 1] = digits[b[i] & 0xf];
        }
        return new String(out);
    }

    static int firstDiff(byte[] a, byte[] b) {
        int n = Math.min(a.length, b.length);
        for (int i = 0; i < n; i++)
            if (a[i] != b[i])
                return i;
        return n;
    }

    // ---- reflection over the generated classes ----------------------------------------------

    // A field of a generated message class: its setX(T) and x() pair.
    static final class Prop {
        final Method getter, setter;
        Prop(Method getter, Method setter) {
            this.getter = getter;
            this.setter = setter;
        }
        Object get(Object o) throws Exception {
            return getter.invoke(o);
        }
        void set(Object o, Object value) throws Exception {
            setter.invoke(o, value);
        }
    }

    static final Map<Class<?>, List<Prop>> PROPS = new java.util.HashMap<>();
    // Fields Java managed to set at some version: a field never set means the filler missed it.
    static final java.util.Set<Prop> everSet = new java.util.HashSet<>();

    // The fields of a generated class, sorted by name so that runs are reproducible.
    static List<Prop> props(Class<?> c) {
        return PROPS.computeIfAbsent(c, k -> {
            List<Prop> out = new ArrayList<>();
            Method[] ms = k.getMethods();
            Arrays.sort(ms, (a, b) -> a.getName().compareTo(b.getName()));
            for (Method s : ms) {
                if (!s.getName().startsWith("set") || s.getParameterCount() != 1
                        || s.getReturnType() != k || Modifier.isStatic(s.getModifiers()))
                    continue;
                String g = Character.toLowerCase(s.getName().charAt(3)) + s.getName().substring(4);
                try {
                    out.add(new Prop(k.getMethod(g), s));
                } catch (NoSuchMethodException e) {
                    throw new IllegalStateException(k.getName() + "." + s.getName() + " has no getter");
                }
            }
            return out;
        });
    }

    // Every tagged field our bytes carried must be known to Java: it keeps unknown tags and
    // writes them back, so a wrong tag number would otherwise round-trip unnoticed.
    static String unknownTags(Object o, String path) throws Exception {
        if (o instanceof Message) {
            Message m = (Message) o;
            if (!m.unknownTaggedFields().isEmpty())
                return path + " has unknown tag " + m.unknownTaggedFields().get(0).tag();
            for (Prop p : props(o.getClass())) {
                String r = unknownTags(p.get(o), path + "." + p.getter.getName());
                if (r != null)
                    return r;
            }
        } else if (o instanceof Collection) {
            int i = 0;
            for (Object e : (Collection<?>) o) {
                String r = unknownTags(e, path + "[" + i++ + "]");
                if (r != null)
                    return r;
            }
        }
        return null;
    }

    // ---- forward: our bytes -> Java decode -> Java encode -----------------------------------

    static int fwdPassed, fwdFailed, fwdSkipped;
    static final Map<String, TreeSet<Short>> skippedVersions = new TreeMap<>();
    static final Map<String, String> javaRanges = new TreeMap<>();

    static void forward(short key, boolean resp, short v, String seed, byte[] ours) {
        String what = kindName(key, resp) + " v" + v + " seed " + seed;
        Message m = newMessage(key, resp);
        javaRanges.put(kindName(key, resp), m.lowestSupportedVersion() + "-" + m.highestSupportedVersion());
        if (v < m.lowestSupportedVersion() || v > m.highestSupportedVersion()) {
            fwdSkipped++;
            skippedVersions.computeIfAbsent(kindName(key, resp), k -> new TreeSet<>()).add(v);
            return;
        }
        try {
            ByteBuffer in = ByteBuffer.wrap(ours);
            m.read(new ByteBufferAccessor(in), v);
            if (in.hasRemaining()) {
                fail("FAIL " + what + ": Java read only " + in.position() + " of our " + ours.length + " bytes");
                return;
            }
            String unknown = unknownTags(m, "message");
            if (unknown != null) {
                fail("FAIL " + what + ": " + unknown + " (a tag Java does not know at this version)");
                return;
            }
            byte[] back = encode(m, v);
            if (!Arrays.equals(back, ours)) {
                fail("FAIL " + what + ": Java re-encodes " + back.length + " bytes, ours "
                        + ours.length + ", first difference at offset " + firstDiff(back, ours)
                        + "\n  ours " + hex(ours) + "\n  java " + hex(back));
                return;
            }
            fwdPassed++;
        } catch (Exception e) {
            fail("FAIL " + what + ": Java cannot read our " + ours.length + " bytes: " + e
                    + "\n  ours " + hex(ours));
        }
    }

    static int printedFailures;

    static void fail(String msg) {
        fwdFailed++;
        if (printedFailures++ < 40)
            System.out.println(msg);
    }

    // ---- reverse: Java builds a message, encodes it --------------------------------------------

    static String randomString(Random r) {
        int n = r.nextInt(12);
        StringBuilder sb = new StringBuilder("j");
        for (int i = 0; i < n; i++)
            sb.append(r.nextInt(8) == 0 ? '\u00e9' : (char) ('a' + r.nextInt(26)));
        return sb.toString();
    }

    static byte[] randomBytes(Random r) {
        byte[] b = new byte[r.nextInt(10)];
        r.nextBytes(b);
        return b;
    }

    // How Java picks values, by seed: 0 and 1 random, 2 zero / empty, 3 minus one, 4 to 7 each
    // value one of those three at random. Zero and -1 are the usual defaults: a tagged field
    // (or a field of a tagged struct) whose default differs between the two sides is written
    // by one and dropped by the other at exactly those values.
    static int mode;

    // A value of a scalar or array element type, or null if t is a struct type.
    static Object randomScalar(Class<?> t, Object current, Random r) {
        int m = mode < 4 ? mode : r.nextInt(3) + 1;
        long fixed = m == 2 ? 0 : -1;
        boolean random = m < 2;
        if (t == boolean.class || t == Boolean.class)
            return !(current instanceof Boolean && (Boolean) current);
        if (t == byte.class || t == Byte.class)
            return random ? (byte) r.nextInt() : (byte) fixed;
        if (t == short.class || t == Short.class)
            return random ? (short) r.nextInt() : (short) fixed;
        if (t == int.class || t == Integer.class)
            return random ? r.nextInt() : (int) fixed;
        if (t == long.class || t == Long.class)
            return random ? r.nextLong() : fixed;
        if (t == double.class || t == Double.class)
            return random ? r.nextDouble() * 1000.0 : (double) fixed;
        if (t == String.class)
            return m == 2 ? "" : randomString(r);
        if (t == byte[].class)
            return m == 2 ? new byte[0] : randomBytes(r);
        if (t == Uuid.class)
            return new Uuid(r.nextLong(), r.nextLong());
        if (t == BaseRecords.class)
            return MemoryRecords.readableRecords(ByteBuffer.wrap(m == 2 ? new byte[0] : randomBytes(r)));
        return null;
    }

    // uint16 and uint32 fields share Java types with int and long; their setters refuse
    // values out of range, so fall back to one in range.
    static Object inRange(Class<?> t, Random r) {
        if (t == int.class)
            return r.nextInt(65536);
        if (t == long.class)
            return r.nextLong() & 0xffffffffL;
        return null;
    }

    static Class<?> elementClass(Method setter, Class<?> param) {
        Type g = setter.getGenericParameterTypes()[0];
        if (g instanceof ParameterizedType)
            return (Class<?>) ((ParameterizedType) g).getActualTypeArguments()[0];
        // A generated XCollection extends ImplicitLinkedHashMultiCollection<X>.
        Type sup = param.getGenericSuperclass();
        if (sup instanceof ParameterizedType)
            return (Class<?>) ((ParameterizedType) sup).getActualTypeArguments()[0];
        throw new IllegalStateException("no element type for " + setter);
    }

    @SuppressWarnings("unchecked")
    static void fill(Message root, Object o, short v, Random r, boolean nulls, int depth) throws Exception {
        for (Prop p : props(o.getClass())) {
            Class<?> t = p.setter.getParameterTypes()[0];
            Object old = p.get(o);
            if (nulls && !t.isPrimitive()) {
                p.set(o, null);
                if (writable(root, v))
                    continue;
                p.set(o, old);
            }
            if (Collection.class.isAssignableFrom(t)) {
                Class<?> et = elementClass(p.setter, t);
                Collection<Object> c = t.isInterface() ? new ArrayList<>()
                        : (Collection<Object>) t.getConstructor().newInstance();
                int n = depth > 2 ? 1 : 1 + r.nextInt(2);
                List<Object> structs = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    Object e = randomScalar(et, null, r);
                    if (e == null) {
                        e = et.getConstructor().newInstance();
                        structs.add(e);
                    }
                    c.add(e);
                }
                p.set(o, c);
                if (!writable(root, v)) {
                    p.set(o, old);
                    continue;
                }
                everSet.add(p);
                for (Object e : structs)
                    fill(root, e, v, r, nulls, depth + 1);
                continue;
            }
            Object value = randomScalar(t, old, r);
            if (value == null) {
                if (!Message.class.isAssignableFrom(t))
                    throw new IllegalStateException("unexpected field type " + t + " in " + o.getClass());
                Object s = t.getConstructor().newInstance();
                p.set(o, s);
                if (!writable(root, v)) {
                    p.set(o, old);
                    continue;
                }
                everSet.add(p);
                fill(root, s, v, r, nulls, depth + 1);
                continue;
            }
            try {
                p.set(o, value);
            } catch (java.lang.reflect.InvocationTargetException e) {
                p.set(o, inRange(t, r));
            }
            if (!writable(root, v))
                p.set(o, old);
            else
                everSet.add(p);
        }
    }

    static int revMade, revFailed;

    static void reverse(short key, boolean resp, short v, PrintWriter out) throws Exception {
        for (int seed = 0; seed < REVERSE_SEEDS; seed++) {
            String what = kindName(key, resp) + " v" + v + " seed " + seed;
            Random r = new Random(((long) key << 40) ^ ((resp ? 1L : 0L) << 32) ^ ((long) v << 8) ^ seed);
            Message m = newMessage(key, resp);
            mode = seed;
            fill(m, m, v, r, (seed & 1) == 1, 0);
            byte[] first = encode(m, v);
            // Java reads its own bytes back and re-encodes: the canonical form (fields Java
            // drops at this version are gone) that our decoder must reproduce.
            Message m2 = newMessage(key, resp);
            ByteBuffer in = ByteBuffer.wrap(first);
            m2.read(new ByteBufferAccessor(in), v);
            byte[] second = encode(m2, v);
            if (in.hasRemaining() || !Arrays.equals(first, second)) {
                revFailed++;
                System.out.println("FAIL " + what + ": Java does not round-trip its own message");
                continue;
            }
            out.println(key + " " + (resp ? "resp" : "req") + " " + v + " " + seed + " " + hex(second));
            revMade++;
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: CodecCheck FWD REV");
            System.exit(2);
        }
        // (key, dir, version) triples laminar supports, in file order.
        long t0 = System.nanoTime();
        List<String> done = new ArrayList<>();
        java.util.Set<String> seen = new java.util.HashSet<>();
        int unknownApis = 0;
        for (String line : Files.readAllLines(Paths.get(args[0]), StandardCharsets.US_ASCII)) {
            String[] f = line.trim().split(" ");
            if (f.length != 5)
                throw new IllegalArgumentException("malformed line: " + line);
            short key = Short.parseShort(f[0]);
            boolean resp = f[1].equals("resp");
            short v = Short.parseShort(f[2]);
            try {
                newMessage(key, resp);
            } catch (RuntimeException e) {
                unknownApis++;
                fwdSkipped++;
                continue;
            }
            forward(key, resp, v, f[3], unhex(f[4]));
            if (seen.add(f[0] + " " + f[1] + " " + f[2]))
                done.add(f[0] + " " + f[1] + " " + f[2]);
        }
        long t1 = System.nanoTime();
        try (PrintWriter out = new PrintWriter(Files.newBufferedWriter(Paths.get(args[1])))) {
            for (String k : done) {
                String[] f = k.split(" ");
                short key = Short.parseShort(f[0]);
                boolean resp = f[1].equals("resp");
                short v = Short.parseShort(f[2]);
                Message m = newMessage(key, resp);
                if (v >= m.lowestSupportedVersion() && v <= m.highestSupportedVersion())
                    reverse(key, resp, v, out);
            }
        }
        long t2 = System.nanoTime();
        Map<String, Short> ourMax = new TreeMap<>();
        for (String k : done) {
            String[] f = k.split(" ");
            ourMax.merge(kindName(Short.parseShort(f[0]), f[1].equals("resp")),
                    Short.parseShort(f[2]), (a, b) -> (short) Math.max(a, b));
        }
        for (Map.Entry<String, Short> e : ourMax.entrySet()) {
            String[] range = javaRanges.get(e.getKey()).split("-");
            if (Short.parseShort(range[1]) > e.getValue())
                System.out.println("note: kafka-clients also has " + e.getKey() + " up to v"
                        + range[1] + " (laminar stops at v" + e.getValue() + ")");
        }
        for (Map.Entry<Class<?>, List<Prop>> e : PROPS.entrySet())
            for (Prop p : e.getValue())
                if (!everSet.contains(p))
                    System.out.println("note: Java never set " + e.getKey().getName() + "."
                            + p.getter.getName() + " at any version both sides support");
        for (Map.Entry<String, TreeSet<Short>> e : skippedVersions.entrySet())
            System.out.println("skipped " + e.getKey() + " versions " + e.getValue()
                    + " (kafka-clients 4.1.1 supports " + javaRanges.get(e.getKey()) + ")");
        if (unknownApis > 0)
            System.out.println("skipped " + unknownApis + " messages of api keys unknown to kafka-clients");
        System.out.println("forward (laminar-encoded -> Java decode/re-encode): " + fwdPassed
                + " passed, " + fwdFailed + " failed, " + fwdSkipped + " skipped");
        System.out.println("reverse: Java encoded " + revMade + " messages for codec_dump check"
                + (revFailed > 0 ? ", " + revFailed + " not self-consistent" : ""));
        System.out.printf("java time: forward %d ms, reverse %d ms%n", (t1 - t0) / 1000000,
                (t2 - t1) / 1000000);
        System.exit(fwdFailed == 0 && revFailed == 0 && fwdPassed > 0 ? 0 : 1);
    }
}
