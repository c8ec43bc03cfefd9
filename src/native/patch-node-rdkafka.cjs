#!/usr/bin/env node
/**
 * postinstall: cheaper JavaScript objects from node-rdkafka 3.6.1's C++.
 *
 * 1. Consumed messages (src/common.cc, Conversion::Message::ToV8Object). For
 *    each message node-rdkafka creates the eight property names ("value",
 *    "key", "topic", ...) and the topic name as new strings, which V8 must
 *    then look up in its string table to use them as keys. Measured alone
 *    (consume(2000) of 48,000 already fetched events), that conversion costs
 *    the main thread 3.3–3.8 µs per message; with the names created once,
 *    internalized, and the topic name reused while it does not change,
 *    2.3–2.7 µs. Each object was then still built property by property: a
 *    map transition and a growth of its property store for each of seven or
 *    eight properties (half of the conversion's samples in a perf profile of
 *    the projector). Now each is a clone of an object of the same shape,
 *    its values set in place. Interleaved, 4 rounds: limit.consume (a
 *    consumer handing a topic to JavaScript) 152–214k → 225–275k
 *    messages/s, higher in every round.
 * 2. Delivery reports (src/callbacks.cc, DeliveryReportDispatcher::Flush):
 *    the same for the report object of every produced message (topic,
 *    partition, offset, key, opaque, timestamp, size, and value when asked
 *    for). banking-es asks for a
 *    report of every outcome it publishes. Measured alone
 *    (bench/delivery-reports-ab.ts: 150,000 messages produced and reported,
 *    6 interleaved rounds), the main thread's time per message went
 *    8.5 → 6.2 µs (median), lower in every round.
 *
 * The objects are the same: same properties in the same order, same values,
 * the same copied Buffers (checked by consuming messages with and without
 * key, value and headers through both builds).
 *
 * This script replaces those two functions in node_modules and rebuilds the
 * addon incrementally (only the two files are recompiled; librdkafka is
 * not). It never fails the install: with another node-rdkafka version,
 * source that differs from what it replaces, or a build that fails, it leaves
 * (or puts back) the original and says why; banking-es then works as before,
 * at the unpatched cost. Each function is checked on its own, so one that
 * changed upstream does not hold back the other. A source an earlier version
 * of this script patched is patched again from the original it kept
 * (`<file>.orig`). Run it again with `node src/native/patch-node-rdkafka.cjs`.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { createHash } = require('node:crypto');
const { spawnSync } = require('node:child_process');

const VERSION = '3.6.1';

/**
 * The C++ both replacements share, named with `prefix`: each .cc file is a
 * translation unit of its own, with no header of ours, so each gets its copy.
 * `${prefix}Name(slot, "name")` gives a property name created once and
 * internalized, so V8 does not look it up again per object;
 * `${prefix}Topic(name)` gives the topic's string, made again only when the
 * topic changes. The addon is not context-aware (NODE_MODULE), so it lives in
 * one isolate; the cache is still tied to the isolate that filled it, and any
 * other gets fresh strings.
 */
function nameCache(prefix) {
  return `static v8::Isolate* ${prefix}NamesIsolate = nullptr;
static Nan::Persistent<v8::String> ${prefix}LastTopic;
static std::string ${prefix}LastTopicName;

static v8::Local<v8::String> ${prefix}Name(Nan::Persistent<v8::String>& slot, const char* name) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate != ${prefix}NamesIsolate) {
    return v8::String::NewFromUtf8(isolate, name, v8::NewStringType::kInternalized).ToLocalChecked();
  }
  if (slot.IsEmpty()) {
    slot.Reset(v8::String::NewFromUtf8(isolate, name, v8::NewStringType::kInternalized).ToLocalChecked());
  }
  return Nan::New(slot);
}

static v8::Local<v8::String> ${prefix}Topic(const std::string& topic_name) {
  if (v8::Isolate::GetCurrent() != ${prefix}NamesIsolate) {
    return Nan::New<v8::String>(topic_name).ToLocalChecked();
  }
  if (${prefix}LastTopic.IsEmpty() || topic_name != ${prefix}LastTopicName) {
    ${prefix}LastTopic.Reset(Nan::New<v8::String>(topic_name).ToLocalChecked());
    ${prefix}LastTopicName = topic_name;
  }
  return Nan::New(${prefix}LastTopic);
}
`;
}

/**
 * Each replaces node-rdkafka 3.6.1's text from `start` up to `end` (not
 * included), whose sha256 must be `sha256`; `mark` starts the replacement.
 */
const PATCHES = [
  {
    file: 'common.cc',
    what: 'message conversion',
    cost: 'consuming costs ~1 µs more per message',
    start: 'v8::Local<v8::Object> ToV8Object(RdKafka::Message *message,\n                                bool include_payload,',
    end: '}  // namespace Message',
    sha256: 'cc76af7ddc5d854b355f69be46462dedc4205e8aebd82ff6c57f174dd54edb25',
    mark: '// banking-es: property names created once, message objects cloned from their shape (src/native/patch-node-rdkafka.cjs)',
    // what earlier versions of this script wrote: such a source is patched again from its original (.orig)
    earlierMarks: ['// banking-es: property names created once (src/native/patch-node-rdkafka.cjs)'],
    replacement: `// banking-es: property names created once, message objects cloned from their shape (src/native/patch-node-rdkafka.cjs)
static Nan::Persistent<v8::String> k_value, k_headers, k_size, k_key, k_topic, k_offset, k_partition, k_timestamp;
// MessageNamesIsolate, MessageLastTopic(Name), MessageName() and MessageTopic(): nameCache('Message') in the script
${nameCache('Message')}
// A message object's shape: an object holding its properties in the order set below, each undefined,
// one with headers and one without. A clone of it gets its values set in place: no map transition and
// no growth of the property store per message, where a new object took one of each per property.
static Nan::Persistent<v8::Object> MessageShapeWithHeaders, MessageShapeWithoutHeaders;

static v8::Local<v8::Object> MessageObject(bool with_headers) {
  if (v8::Isolate::GetCurrent() != MessageNamesIsolate) return Nan::New<v8::Object>();
  Nan::Persistent<v8::Object>& slot = with_headers ? MessageShapeWithHeaders : MessageShapeWithoutHeaders;
  if (slot.IsEmpty()) {
    v8::Local<v8::Object> shape = Nan::New<v8::Object>();
    Nan::Set(shape, MessageName(k_value, "value"), Nan::Undefined());
    if (with_headers) Nan::Set(shape, MessageName(k_headers, "headers"), Nan::Undefined());
    Nan::Set(shape, MessageName(k_size, "size"), Nan::Undefined());
    Nan::Set(shape, MessageName(k_key, "key"), Nan::Undefined());
    Nan::Set(shape, MessageName(k_topic, "topic"), Nan::Undefined());
    Nan::Set(shape, MessageName(k_offset, "offset"), Nan::Undefined());
    Nan::Set(shape, MessageName(k_partition, "partition"), Nan::Undefined());
    Nan::Set(shape, MessageName(k_timestamp, "timestamp"), Nan::Undefined());
    slot.Reset(shape);
  }
  return Nan::New(slot)->Clone();
}

v8::Local<v8::Object> ToV8Object(RdKafka::Message *message,
                                bool include_payload,
                                bool include_headers) {
  if (MessageNamesIsolate == nullptr) MessageNamesIsolate = v8::Isolate::GetCurrent();
  if (message->err() == RdKafka::ERR_NO_ERROR) {
    // the same condition as for the headers property below
    v8::Local<v8::Object> pack = MessageObject(include_headers && message->headers() != 0);

    const void* message_payload = message->payload();

    if (!include_payload) {
      Nan::Set(pack, MessageName(k_value, "value"), Nan::Undefined());
    } else if (message_payload) {
      Nan::Set(pack, MessageName(k_value, "value"),
        Nan::Encode(message_payload, message->len(), Nan::Encoding::BUFFER));
    } else {
      Nan::Set(pack, MessageName(k_value, "value"), Nan::Null());
    }

    RdKafka::Headers* headers;
    if (((headers = message->headers()) != 0) && include_headers) {
      v8::Local<v8::Array> v8headers = Nan::New<v8::Array>();
      int index = 0;
      std::vector<RdKafka::Headers::Header> all = headers->get_all();
      for (std::vector<RdKafka::Headers::Header>::iterator it = all.begin();
                                                     it != all.end(); it++) {
        v8::Local<v8::Object> v8header = Nan::New<v8::Object>();
        Nan::Set(v8header, Nan::New<v8::String>(it->key()).ToLocalChecked(),
          Nan::Encode(it->value_string(),
            it->value_size(), Nan::Encoding::BUFFER));
        Nan::Set(v8headers, index, v8header);
        index++;
      }
      Nan::Set(pack, MessageName(k_headers, "headers"), v8headers);
    }

    Nan::Set(pack, MessageName(k_size, "size"), Nan::New<v8::Number>(message->len()));

    const void* key_payload = message->key_pointer();

    if (key_payload) {
      // We want this to also be a buffer to avoid corruption
      // https://github.com/Blizzard/node-rdkafka/issues/208
      Nan::Set(pack, MessageName(k_key, "key"),
        Nan::Encode(key_payload, message->key_len(), Nan::Encoding::BUFFER));
    } else {
      Nan::Set(pack, MessageName(k_key, "key"), Nan::Null());
    }

    Nan::Set(pack, MessageName(k_topic, "topic"), MessageTopic(message->topic_name()));
    Nan::Set(pack, MessageName(k_offset, "offset"),
      Nan::New<v8::Number>(message->offset()));
    Nan::Set(pack, MessageName(k_partition, "partition"),
      Nan::New<v8::Number>(message->partition()));
    Nan::Set(pack, MessageName(k_timestamp, "timestamp"),
      Nan::New<v8::Number>(message->timestamp().timestamp));

    return pack;
  } else {
    return RdKafkaError(message->err());
  }
}

`,
  },
  {
    file: 'callbacks.cc',
    what: 'delivery reports',
    cost: 'each produced message costs ~2 µs more',
    start: 'void DeliveryReportDispatcher::Flush() {',
    end: '// This only exists to circumvent the problem',
    sha256: '94484c82a9ab2ceb9d5721eebe02240fe59a171bf4504039035c5558a6019636',
    mark: '// banking-es: delivery report names created once (src/native/patch-node-rdkafka.cjs)',
    replacement: `// banking-es: delivery report names created once (src/native/patch-node-rdkafka.cjs)
static Nan::Persistent<v8::String> r_topic, r_partition, r_offset, r_key, r_opaque, r_timestamp, r_value, r_size;
// ReportNamesIsolate, ReportLastTopic(Name), ReportName() and ReportTopic(): nameCache('Report') in the script
${nameCache('Report')}
void DeliveryReportDispatcher::Flush() {
  Nan::HandleScope scope;
  if (ReportNamesIsolate == nullptr) ReportNamesIsolate = v8::Isolate::GetCurrent();

  const unsigned int argc = 2;

  size_t outstanding_event_count = 0;
  std::vector<DeliveryReport> events_list;
  {
    scoped_mutex_lock lock(async_lock);
    outstanding_event_count = events.size();
    const size_t flush_count = std::min<size_t>(outstanding_event_count, 100UL);
    events_list.reserve(flush_count);
    for (size_t i = 0; i < flush_count; i++) {
      events_list.emplace_back(std::move(events.front()));
      events.pop_front();
    }
  }

  for (size_t i = 0; i < events_list.size(); i++) {
    v8::Local<v8::Value> argv[argc] = {};

    const DeliveryReport& event = events_list[i];

    if (event.is_error) {
        // If it is an error we need the first argument to be set
        argv[0] = Nan::Error(event.error_string.c_str());
    } else {
        argv[0] = Nan::Null();
    }
    Local<Object> jsobj(Nan::New<Object>());

    Nan::Set(jsobj, ReportName(r_topic, "topic"),
            ReportTopic(event.topic_name));
    Nan::Set(jsobj, ReportName(r_partition, "partition"),
            Nan::New<v8::Number>(event.partition));
    Nan::Set(jsobj, ReportName(r_offset, "offset"),
            Nan::New<v8::Number>(event.offset));

    if (event.key) {
      Nan::MaybeLocal<v8::Object> buff = Nan::NewBuffer(
        static_cast<char*>(event.key),
        static_cast<int>(event.key_len));

      Nan::Set(jsobj, ReportName(r_key, "key"),
              buff.ToLocalChecked());
    } else {
      Nan::Set(jsobj, ReportName(r_key, "key"), Nan::Null());
    }

    if (event.opaque) {
      Nan::Persistent<v8::Value> * persistent =
        static_cast<Nan::Persistent<v8::Value> *>(event.opaque);
      v8::Local<v8::Value> object = Nan::New(*persistent);
      Nan::Set(jsobj, ReportName(r_opaque, "opaque"), object);

      // Okay... now reset and destroy the persistent handle
      persistent->Reset();

      // Get rid of the persistent since we are making it local
      delete persistent;
    }

    if (event.timestamp > -1) {
      Nan::Set(jsobj, ReportName(r_timestamp, "timestamp"),
              Nan::New<v8::Number>(event.timestamp));
    }

    if (event.m_include_payload) {
      if (event.payload) {
        Nan::MaybeLocal<v8::Object> buff = Nan::NewBuffer(
          static_cast<char*>(event.payload),
          static_cast<int>(event.len));

        Nan::Set(jsobj, ReportName(r_value, "value"),
          buff.ToLocalChecked());
      } else {
        Nan::Set(jsobj, ReportName(r_value, "value"),
          Nan::Null());
      }
    }

    Nan::Set(jsobj, ReportName(r_size, "size"),
            Nan::New<v8::Number>(event.len));

    argv[1] = jsobj;

    Dispatch(argc, argv);
  }
  if (outstanding_event_count > events_list.size()) {
    Execute();
  }
}

`,
  },
];

const say = (s) => process.stdout.write(`banking-es: ${s}\n`);
const skip = (patch, why) => say(`node-rdkafka's ${patch.what} left as it is (${why}); everything works, ${patch.cost}`);
const skipAll = (why) => PATCHES.forEach((patch) => skip(patch, why));

function main() {
  let dir;
  try {
    dir = path.dirname(require.resolve('node-rdkafka/package.json', { paths: [path.join(__dirname, '..', '..')] }));
  } catch {
    return skipAll('node-rdkafka is not installed');
  }
  const version = String(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version).replace(/^v/, '');
  /** the patches to apply now, each with its file's path, original source and patched source */
  const todo = [];
  for (const patch of PATCHES) {
    const file = path.join(dir, 'src', patch.file);
    let src = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    if (src !== null && src.includes(patch.mark)) { say(`node-rdkafka ${patch.what} already patched`); continue; }
    if (src !== null && (patch.earlierMarks ?? []).some((m) => src.includes(m))) {
      // an install patched by an earlier version of this script (npm install over it, a cached node_modules)
      if (!fs.existsSync(`${file}.orig`)) { skip(patch, `it carries an earlier banking-es patch and its original src/${patch.file}.orig is missing; npm ci reinstalls it`); continue; }
      say(`node-rdkafka ${patch.what} carries an earlier banking-es patch; patching its original (src/${patch.file}.orig) again`);
      src = fs.readFileSync(`${file}.orig`, 'utf8');
    }
    if (version !== VERSION) { skip(patch, `node-rdkafka is ${version}, the patch is for ${VERSION}`); continue; }
    if (src === null) { skip(patch, `its source file src/${patch.file} is missing`); continue; }
    const start = src.indexOf(patch.start);
    const end = start < 0 ? -1 : src.indexOf(patch.end, start);
    if (end < 0 || createHash('sha256').update(src.slice(start, end)).digest('hex') !== patch.sha256) {
      skip(patch, 'its source differs from the code the patch replaces');
      continue;
    }
    todo.push({ patch, file, src, patched: src.slice(0, start) + patch.replacement + src.slice(end) });
  }
  if (todo.length === 0) return;
  const skipTodo = (why) => todo.forEach((t) => skip(t.patch, why));
  // node-gyp as npm runs it for install scripts (npm sets npm_config_node_gyp), else npm's own copy
  const npmGyp = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const gyp = process.env.npm_config_node_gyp || (fs.existsSync(npmGyp) ? npmGyp : '');
  if (!gyp) return skipTodo('node-gyp was not found');
  if (!fs.existsSync(path.join(dir, 'build', 'Makefile')) && !fs.existsSync(path.join(dir, 'build', 'binding.sln'))) {
    return skipTodo('node-rdkafka was not built from source here');
  }
  const args = [gyp, 'build'];
  if (process.env.npm_config_nodedir) args.push(`--nodedir=${process.env.npm_config_nodedir}`);
  const putBack = () => {
    for (const t of todo) fs.writeFileSync(t.file, t.src);
    spawnSync(process.execPath, args, { cwd: dir, stdio: 'ignore' });
  };
  let r;
  try {
    for (const t of todo) {
      fs.writeFileSync(`${t.file}.orig`, t.src); // kept, to diff against or to put back
      fs.writeFileSync(t.file, t.patched);
      // make decides by timestamps: an object file dated later than the source (a skewed clock) would not be
      // rebuilt, and "patched" would be said of the old addon. Without it, make must compile the file.
      for (const config of ['Release', 'Debug']) {
        fs.rmSync(path.join(dir, 'build', config, 'obj.target', 'node-librdkafka', 'src', t.patch.file.replace(/\.cc$/, '.o')), { force: true });
      }
    }
    r = spawnSync(process.execPath, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  } catch (e) {
    putBack();
    return skipTodo(`unexpected: ${e && e.message}`);
  }
  if (r.status !== 0) {
    putBack();
    return skipTodo(`the rebuild failed: ${(r.stderr || String(r.error)).split('\n').filter((l) => /error/i.test(l)).slice(0, 3).join(' | ')}`);
  }
  for (const t of todo) say(`node-rdkafka ${t.patch.what} patched and rebuilt (see src/native/patch-node-rdkafka.cjs)`);
}

try {
  main();
} catch (e) {
  skipAll(`unexpected: ${e && e.message}`);
}
