-- Origin: shared/bench/seed.sql, the team's benchmark data set, copied unchanged below these
-- two lines so that `make bench` needs nothing outside the project.
-- Deterministic seed: 20 roles + :rows accounts (default 1,000,000).
-- Usage: psql "$DSN" -v rows=1000000 -f schema.sql -f seed.sql
-- Every value is a pure function of the row number i (multiplicative hashing,
-- no random()), so two databases seeded with the same :rows are identical.
\if :{?rows}
\else
\set rows 1000000
\endif

INSERT INTO roles (id, name, description, permissions, created_at)
SELECT r,
       (ARRAY['超级管理员','管理员','运营','客服','财务','审计','开发','测试','产品','市场',
              'viewer','editor','auditor','support_l1','support_l2','billing','ops','guest','partner','readonly'])[r],
       '角色 role #' || r,
       CASE WHEN r = 1 THEN ARRAY['*']
            ELSE (ARRAY['account:read','export:create','role:read','account:write','role:write',
                        'import:create','audit:read','ops:read'])[1:1 + r % 8] END,
       timestamptz '2021-06-01 00:00:00+00' + r * interval '1 day'
FROM generate_series(1, 20) AS r;
SELECT setval(pg_get_serial_sequence('roles', 'id'), 20);

INSERT INTO accounts (id, username, nickname, email, phone, status, role_id, created_at, last_login_at)
SELECT i,
       'user' || lpad(i::text, 8, '0'),
       CASE
         -- ~0.1%: formula-injection cases
         WHEN i % 1000 = 7 THEN (ARRAY['=HYPERLINK("http://x.invalid","点我")', '+1+1', '-2+3*cmd', '@SUM(A1:A9)'])[1 + (i / 1000) % 4] || ' ' || i
         -- ~0.5%: CSV-hostile characters (commas, quotes, newlines)
         WHEN i % 200 = 13 THEN (ARRAY['张三, 李四', '老王 "大哥"', E'第一行\n第二行', E'a,"b"\r\nc'])[1 + (i / 200) % 4] || i
         -- ~10%: plain ASCII nicknames
         WHEN h1 % 10 = 0 THEN 'player_' || (h1 % 100000)
         -- ~10%: mixed Chinese + ASCII
         WHEN h1 % 10 = 1 THEN substr(sur, (1 + h2 % length(sur))::int, 1) || 'Tony' || (h3 % 1000)
         -- ~3%: no nickname
         WHEN h1 % 33 = 2 THEN NULL
         -- rest: 2-4 Chinese characters
         ELSE substr(sur, (1 + h2 % length(sur))::int, 1)
              || substr(given, (1 + h3 % length(given))::int, 1)
              || CASE WHEN h4 % 3 > 0 THEN substr(given, (1 + h5 % length(given))::int, 1) ELSE '' END
              || CASE WHEN h4 % 7 = 0 THEN substr(given, (1 + h2 % length(given))::int, 1) ELSE '' END
       END,
       CASE WHEN h5 % 20 = 0 THEN NULL
            ELSE 'user' || i || '@' || (ARRAY['example.com','qq.com','163.com','gmail.com','corp.example.cn'])[(1 + h4 % 5)::int] END,
       CASE WHEN h3 % 33 = 0 THEN NULL
            WHEN h3 % 10 = 1 THEN '+86' || (13000000000 + h5 % 9999999999)::text
            WHEN h3 % 20 = 2 THEN '0' || (20 + h2 % 980)::text || '-' || lpad((h4 % 100000000)::text, 8, '0')
            ELSE (13000000000 + h5 % 6999999999)::text END,
       CASE WHEN h2 % 100 < 80 THEN 'active' WHEN h2 % 100 < 95 THEN 'disabled' ELSE 'locked' END,
       CASE WHEN h4 % 50 = 0 THEN NULL ELSE 1 + h3 % 20 END,
       timestamptz '2022-01-01 00:00:00+00' + (h1 % (3 * 365 * 86400)) * interval '1 second',
       CASE WHEN h5 % 5 = 0 THEN NULL
            ELSE timestamptz '2022-01-01 00:00:00+00' + (h1 % (3 * 365 * 86400)) * interval '1 second'
                 + (h2 % (180 * 86400)) * interval '1 second' END
FROM (
  SELECT i,
         (i * 2654435761) % 4294967291 AS h1,
         (i * 40503 + 12345) % 1000003 AS h2,
         (i * 69069 + 1) % 2147483629 AS h3,
         (i * 1103515245 + 12345) % 2147483647 AS h4,
         (i * 6364136223 + 1442695) % 9999999967 AS h5,
         '张王李赵刘陈杨黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤欧阳司马' AS sur,
         '伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华玉萍红娥玲芬燕彩春菊凤洁梅琳素云莲真环雪荣爱妹香月莺媛瑞凡佳嘉琼勤珍贞莉娣叶璧璐娅琦晶妍茜秋珊莎锦黛青倩婷姣婉娴瑾颖露瑶怡婵雁蓓纨仪荷丹蓉眉君琴蕊薇菁梦岚苑婕馨瑗琰韵融园艺咏卿聪澜纯毓悦昭冰爽琬茗羽希宁欣飘育滢馥筠柔竹霭凝晓欢霄枫芸菲寒伊亚宜可姬舒影荔枝思鑫淼龘' AS given
  FROM generate_series(1::bigint, :rows) AS i
) AS g;
SELECT setval(pg_get_serial_sequence('accounts', 'id'), greatest(:rows, 1));

ANALYZE roles;
VACUUM (ANALYZE) accounts;
